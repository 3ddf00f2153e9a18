"""Argument validation for the tf losses (spec.md section 7): Python values and static shapes
only, so nothing here forces a host round trip or breaks XLA compilation."""

from __future__ import annotations

import tensorflow as tf

from ghm_args import check_hyper, check_mu  # noqa: F401 - re-exported for the losses


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
