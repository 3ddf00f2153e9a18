"""GHM-C for TensorFlow / Keras: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ._checks import (BOOL, FLOATING, INTEGER, as_tensor, same_shape, check_hyper, compute_dtype,
                      is_class_index_target, select, to_mask)
from ._harmonize import harmonized_loss, region_index
from ._loss import GHMLossBase


def cross_entropy(x: tf.Tensor, t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """Eq. (1) for logits and soft targets, from p = sigmoid(x): since log1p(exp(-|x|)) =
    -log(max(p, 1 - p)), L = relu(x) - x t - log(max(p, 1 - p)): no overflow for any finite x,
    one log (XLA fuses it with Eq. 2), and the same number to 1e-7 absolute."""
    return tf.nn.relu(x) - x * t - tf.math.log(tf.maximum(p, 1.0 - p))


def cross_entropy_grad(x: tf.Tensor, t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """Eq. (2): dL_CE/dx = p - t."""
    return p - t


def _finite(a: tf.Tensor) -> tf.Tensor:
    """All entries finite (a 0-dim bool): one min and one max pass, no host round trip."""
    return tf.math.is_finite(tf.reduce_min(a)) & tf.math.is_finite(tf.reduce_max(a))


def _in_unit_interval(a: tf.Tensor) -> tf.Tensor:
    return (tf.reduce_min(a) >= 0) & (tf.reduce_max(a) <= 1)  # False for NaN


def _prepare(y_true, pred: tf.Tensor, valid: tf.Tensor | None, bins: int):
    """L_i (Eq. 1), dL_i/dx_i (Eq. 2), the region index of g_i = |p_i - t_i| (Eq. 3) with masked
    entries in the spare region, and the batch's ok flag (every valid entry finite and in range)."""
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
        # Masked entries become (x, t) = (0, 1/2): a finite loss, gradient 0 and g = 0, so no NaN
        # or Inf they hold reaches the sums. Select also requires t shaped exactly like pred.
        x = select(valid, x, 0.0)
        t = select(valid, t, 0.5)
    ok = ok & _finite(x)
    if not classes and target.dtype != tf.bool:
        ok = ok & _in_unit_interval(t)  # NaN and Inf targets fail it too
    p = tf.sigmoid(x)
    per_entry_grad = cross_entropy_grad(x, t, p)
    ind = region_index(tf.abs(per_entry_grad), bins, valid)  # Eq. (3)
    return cross_entropy(x, t, p), per_entry_grad, ind, ok


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
    ``y_pred`` or like ``y_pred.shape[:-1]`` (Keras's per-sample weights, broadcast). A Keras
    mask on ``y_pred`` (e.g. from ``Embedding(mask_zero=True)``) masks entries the same way.

    ``y_true``: shaped like ``y_pred`` (floats in [0, 1], binary or soft; bool; or integer 0/1
    labels), or integer class indices of shape ``y_pred.shape[:-1]`` (index C = background, an
    all-zero row; needs C >= 2: with one logit an integer ``y`` of shape (N,) is ambiguous and
    raises ``ValueError``; pass ``y[:, None]``). Shapes unknown when a ``tf.function`` is traced
    are checked when it runs (``InvalidArgumentError``), never broadcast.

    beta is a constant for backprop. A NaN/Inf in a valid entry, a valid target outside [0, 1]
    or a valid class index outside [0, C] gives a NaN loss and leaves the EMA variable as it was
    (checking would need a host round trip). No valid entry gives 0. Statistics are float32
    (float64 for float64 ``y_pred``), also under ``mixed_float16``; the loss has that dtype.

    Keras contract: under ``tf.distribute`` the "mean" is divided by the number of replicas in
    sync, as Keras's own losses are, so ``model.fit`` averages the replicas' gradients. Each
    replica harmonizes its own batch (per-replica density).

    EMA state: ``ema`` and ``ema_initialized``, non-trainable float32 ``tf.Variable``s owned by
    the loss (create the loss inside ``strategy.scope()`` under tf.distribute; replicas keep the
    first replica's state), updated by every call (eager, ``tf.function``, XLA, ``model.fit``;
    also by ``model.evaluate``: evaluate with a separate instance, or ``ghm_c_loss``, to keep it
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

    def _prepare(self, y_true, pred, valid):
        return _prepare(y_true, pred, valid, self.bins)


def ghm_c_loss(y_true, y_pred, label_weight=None, *, bins: int = 30, dialect: str = "paper",
               reduction: str = "mean", loss_weight: float = 1.0) -> tf.Tensor:
    """Stateless GHM-C (no momentum), Keras argument order; same semantics as :class:`GHMCLoss`
    (no distribution scaling: this is the plain function)."""
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    pred = as_tensor("y_pred", y_pred, allowed=(FLOATING,))
    valid = None if label_weight is None else to_mask("label_weight", label_weight, pred)
    loss, _, _ = harmonized_loss(pred, *_prepare(y_true, pred, valid, bins), bins=bins, momentum=0.0,
                                 dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    return loss
