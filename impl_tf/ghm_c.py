"""GHM-C for TensorFlow / Keras: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ._checks import anchor_mask, as_tensor, check_hyper, check_shape, compute_dtype
from ._harmonize import ghm_reduce
from ._loss import GHMLossBase


def _prepare(y_true, y_pred, label_weight):
    """Per-entry CE (Eq. 1), gradient norm g (Eq. 3), the valid mask and the batch's ok flag."""
    pred = as_tensor("y_pred", y_pred, kinds="f")
    target = as_tensor("y_true", y_true, kinds="fbi")
    dtype = compute_dtype(pred)
    x = tf.cast(pred, dtype)
    pshape = tuple(pred.shape)
    if target.dtype.is_integer:  # class indices; label C = background (all-zero row)
        if pred.shape.rank == 0:
            raise ValueError("integer (class index) y_true needs y_pred of shape (..., C)")
        check_shape("integer (class index) y_true", target, pshape[:-1])
        n_classes = pshape[-1]
        target = tf.cast(target, tf.int64)
        t = tf.one_hot(target, n_classes, dtype=dtype)  # out-of-range labels give all-zero rows
        in_range = (target >= 0) & (target <= n_classes)
        entry_ok = tf.broadcast_to(in_range[..., None], tf.shape(x))
    else:
        check_shape("y_true", target, pshape)
        t = tf.cast(target, dtype)
        entry_ok = (t >= 0) & (t <= 1)
    valid = tf.ones_like(x, dtype=tf.bool) if label_weight is None else anchor_mask(label_weight, pred)
    entry_ok = entry_ok & tf.math.is_finite(x) & tf.math.is_finite(t)
    ok = tf.reduce_all(entry_ok | tf.logical_not(valid))
    # Masked entries are zeroed so no NaN reaches their gradient; valid non-finite ones stay.
    zero = tf.zeros([], dtype)
    x_safe, t_safe = tf.where(valid, x, zero), tf.where(valid, t, zero)
    per_entry = tf.nn.sigmoid_cross_entropy_with_logits(labels=t_safe, logits=x_safe)
    g = tf.abs(tf.sigmoid(tf.stop_gradient(x_safe)) - t_safe)
    return per_entry, g, valid, ok


@keras.saving.register_keras_serializable(package="ghm")
class GHMCLoss(GHMLossBase):
    """GHM-C loss (Li et al., AAAI 2019, Eqs. 1-13) as a Keras loss: sigmoid cross entropy
    reweighted by the inverse density of ``g = |sigmoid(y_pred) - y_true|``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * CE(y_pred_i, y_true_i)`` ("mean").

    Dialects (spec.md section 4):

    - ``"paper"``: ``beta_i = N / (S_ind(i) * bins)``, S = the region counts R, or with momentum
      their EMA (Eq. 12) over every region, starting from the first call's counts.
    - ``"mmdet"``: the official code: ``beta_i = N / (A_ind(i) * n)``, n = number of non-empty
      regions; with momentum the accumulator A starts at zero and is updated only for
      non-empty regions.

    ``sample_weight`` is the label weight and acts only as a mask: an entry with weight > 0 is
    an example; weight 0 (also negative or NaN) excludes it from N and from the histogram, and
    its gradient is 0. Positive values other than 1 are *not* multiplied in (the official code
    does the same); use ``reduction="none"`` to rescale entries yourself. It may be shaped like
    ``y_pred`` or like ``y_pred.shape[:-1]`` (Keras's per-sample weights, broadcast).

    ``y_true``: floats in [0, 1] shaped like ``y_pred`` (binary or soft), or integer class
    indices of shape ``y_pred.shape[:-1]`` (index C = background, an all-zero row).

    beta is a constant for backprop. A NaN/Inf in a valid entry, a valid target outside [0, 1]
    or a valid class index outside [0, C] gives a NaN loss and leaves the EMA variable as it was
    (checking would need a host round trip). No valid entry gives 0. Statistics are float32
    (float64 for float64 ``y_pred``), also under ``mixed_float16``; the loss has that dtype.

    EMA state: ``ema`` and ``ema_initialized``, non-trainable ``tf.Variable``s owned by the loss,
    updated by every call (eager, ``tf.function``, XLA, ``model.fit``; also by
    ``model.evaluate``: evaluate with a separate instance, or ``ghm_c_loss``, to keep it
    untouched). They are saved in and restored from a ``.keras`` model.

    Args:
        bins: number of unit regions M. Default: 30.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"`` (1/N), ``"sum"`` or ``"none"`` (per entry beta * CE). Default: ``"mean"``.
        loss_weight: multiplier of the loss. Default: 1.0.
        name: the loss's name. Default: ``"ghm_c_loss"``.
    """

    def __init__(self, bins: int = 30, momentum: float = 0.0, dialect: str = "paper", reduction: str = "mean",
                 loss_weight: float = 1.0, name: str | None = "ghm_c_loss") -> None:
        super().__init__(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction,
                         loss_weight=loss_weight, name=name)

    def _prepare(self, y_true, y_pred, sample_weight):
        return _prepare(y_true, y_pred, sample_weight)


def ghm_c_loss(y_true, y_pred, label_weight=None, *, bins: int = 30, dialect: str = "paper",
               reduction: str = "mean", loss_weight: float = 1.0) -> tf.Tensor:
    """Stateless GHM-C (no momentum), Keras argument order; same semantics as :class:`GHMCLoss`."""
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    loss, _, _ = ghm_reduce(*_prepare(y_true, y_pred, label_weight), bins=bins, momentum=0.0, dialect=dialect,
                            reduction=reduction, loss_weight=loss_weight)
    return loss
