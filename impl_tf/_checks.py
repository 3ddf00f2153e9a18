"""Argument validation for the tf losses (spec.md section 7): Python values and static shapes
only, so nothing here forces a host round trip or breaks XLA compilation."""

from __future__ import annotations

import math
import numbers

import tensorflow as tf

DIALECTS = ("paper", "mmdet")
REDUCTIONS = ("mean", "sum", "none")


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be a real number in [0, 1), got {momentum!r}")
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, numbers.Real) or not math.isfinite(loss_weight):
        raise ValueError(f"loss_weight must be a finite real number, got {loss_weight!r}")


def check_mu(mu) -> None:
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not (math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu must be a finite real number > 0, got {mu!r}")


def as_tensor(name: str, x, *, kinds: str) -> tf.Tensor:
    """Convert and check the dtype kind: 'f' floating, 'b' bool, 'i' integer."""
    try:
        x = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be convertible to a tensor: {e}") from None
    d = x.dtype
    ok = ("f" in kinds and d.is_floating) or ("b" in kinds and d == tf.bool) or ("i" in kinds and d.is_integer)
    if not ok:
        names = {"f": "floating", "b": "bool", "i": "integer"}
        raise TypeError(f"{name} must have a {' or '.join(names[k] for k in kinds)} dtype, got {d.name}")
    return x


def check_shape(name: str, x: tf.Tensor, *shapes) -> None:
    got = x.shape
    if not any(got.is_compatible_with(s) and got.rank == len(s) for s in shapes):
        raise ValueError(f"{name} must have shape {' or '.join(str(tuple(s)) for s in shapes)}, got {tuple(got)}")


def anchor_mask(label_weight, pred: tf.Tensor) -> tf.Tensor:
    """valid = label_weight > 0 (NaN and negatives are masked), per-anchor weights broadcast."""
    w = as_tensor("label_weight", label_weight, kinds="fbi")
    pshape = tuple(pred.shape)
    check_shape("label_weight", w, pshape, pshape[:-1])
    valid = w > tf.zeros([], w.dtype) if w.dtype != tf.bool else w
    if w.shape.rank != pred.shape.rank:
        valid = tf.broadcast_to(valid[..., None], tf.shape(pred))
    return valid


def compute_dtype(pred: tf.Tensor) -> tf.DType:
    """Statistics in float32 or better (float64 stays float64; half types are upcast)."""
    return tf.float64 if pred.dtype == tf.float64 else tf.float32
