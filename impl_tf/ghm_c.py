"""GHM-C for TensorFlow / Keras: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import tensorflow as tf

from . import _diagnostics
from ._checks import (
    BOOL,
    FLOATING,
    INTEGER,
    as_tensor,
    check_hyper,
    compute_dtype,
    is_class_index_target,
    same_shape,
    to_mask,
)
from ._harmonize import harmonized_loss, poison_in_counts, region_index


def cross_entropy(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Eq. (1) for logits and soft targets, max(x, 0) - x t + log(1 + e^-|x|), written as
    x (H(x) - t) + softplus(-|x|) with H(x) = [x > 0]: both terms are >= 0, so nothing cancels
    (spec.md 8: the form from log(max(p, 1 - p)) loses digits for a confident positive), and
    nothing overflows for any finite x. H(x) - t is exact (Sterbenz for t >= 1/2)."""
    return x * (tf.cast(x > 0.0, x.dtype) - t) + tf.nn.softplus(-tf.abs(x))


def cross_entropy_grad(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Eq. (2): dL_CE/dx = p - t, p = sigmoid(x)."""
    return tf.sigmoid(x) - t


def _finite_and_in_range(x: tf.Tensor, t: tf.Tensor | None) -> tf.Tensor:
    """Per entry: x finite and, when t is given, t in [0, 1] (which NaN fails). Written with
    is_finite and comparisons, which no graph optimiser may fold (x * 0 could be folded to 0,
    hiding a NaN)."""
    ok = tf.math.is_finite(x)
    if t is not None:
        ok = ok & (t >= 0.0) & (t <= 1.0)
    return ok


def _all_valid_finite_and_in_range(x: tf.Tensor, t: tf.Tensor | None, valid: tf.Tensor | None) -> tf.Tensor:
    """Every valid entry ``_finite_and_in_range``: one boolean reduction, no host round trip."""
    ok = _finite_and_in_range(x, t)
    if valid is not None:
        ok = ok | tf.logical_not(valid)
    return tf.reduce_all(ok)


def _prepare(y_true, pred: tf.Tensor, valid: tf.Tensor | None, bins: int):
    """L_i (Eq. 1), dL_i/dx_i (Eq. 2), the region index of g_i = |p_i - t_i| (Eq. 3) with masked
    entries in the spare region, and the batch's ok flag (every valid entry finite and in range);
    under XLA (``poison_in_counts``) that check is a per-entry flag ``bad`` instead, returned last,
    which ``harmonized_loss`` counts in the histogram's slot M + 1.

    Masked entries are not sanitised in the inputs: ``harmonized_loss`` zeroes their products
    (where ``valid`` is False), so under XLA the selects fuse into the kernels that form the sums,
    and no NaN or Inf a masked entry holds reaches one."""
    target = as_tensor("y_true", y_true, allowed=(FLOATING, BOOL, INTEGER))
    classes = is_class_index_target(target, pred)
    dtype = compute_dtype(pred)
    x = tf.stop_gradient(tf.cast(pred, dtype))
    ok = tf.constant(True)
    if classes:  # class indices; label C = background (an all-zero row from one_hot)
        n_classes = pred.shape[-1]
        labels = tf.cast(target, tf.int64)
        t = tf.one_hot(labels, n_classes, dtype=dtype)
        in_range = (labels >= 0) & (labels <= n_classes)
        if valid is not None:
            in_range = in_range | tf.logical_not(tf.reduce_any(valid, axis=-1))
        ok = tf.reduce_all(in_range)
    else:
        t = tf.cast(target, dtype)
    t = same_shape("y_true", t, x)
    if valid is not None:
        valid = same_shape("label_weight", valid, x)
    checked_t = t if not classes and target.dtype != tf.bool else None
    bad = None
    if poison_in_counts():  # XLA: a per-entry flag, computed with the region index, counted in slot M + 1
        bad = tf.logical_not(_finite_and_in_range(x, checked_t))
        if valid is not None:
            bad = bad & valid
    else:
        ok = ok & _all_valid_finite_and_in_range(x, checked_t, valid)
    per_entry_grad, per_entry_loss = cross_entropy_grad(x, t), cross_entropy(x, t)
    ind = region_index(tf.abs(per_entry_grad), bins, valid)  # Eq. (3)
    # dL/dt = -x (spec.md 5), for a float target shaped like pred that the tape may watch
    target_terms = (target, -x) if not classes and target.dtype.is_floating else None
    return per_entry_loss, per_entry_grad, ind, ok, valid, target_terms, bad


def ghm_c_loss(
    y_true,
    y_pred,
    label_weight=None,
    *,
    bins: int = 30,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
    diagnostics: bool = False,
):
    """Stateless GHM-C (no momentum), Keras argument order; same semantics as :class:`GHMCLoss`
    (no distribution scaling: this is the plain function). With ``diagnostics=True`` returns
    ``(loss, Diagnostics)``: what the call did (spec.md 13), else the loss."""
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    pred = as_tensor("y_pred", y_pred, allowed=(FLOATING,))
    valid = None if label_weight is None else to_mask("label_weight", label_weight, pred)
    out = harmonized_loss(
        pred,
        *_prepare(y_true, pred, valid, bins),
        bins=bins,
        momentum=0.0,
        dialect=dialect,
        reduction=reduction,
        loss_weight=loss_weight,
        diagnose=_diagnostics.collector("c", y_true, pred) if diagnostics else None,
    )
    return (out[0], out[3]) if diagnostics else out[0]
