"""GHM-C for TensorFlow / Keras: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ._checks import (BOOL, FLOATING, INTEGER, as_tensor, check_hyper, compute_dtype, is_class_index_target,
                      same_shape, to_mask)
from ._harmonize import harmonized_loss, region_index
from ._loss import GHMLossBase


def cross_entropy(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Eq. (1) for logits and soft targets, max(x, 0) - x t + log(1 + e^-|x|), written as
    x (H(x) - t) + softplus(-|x|) with H(x) = [x > 0]: both terms are >= 0, so nothing cancels
    (spec.md 8: the form from log(max(p, 1 - p)) loses digits for a confident positive), and
    nothing overflows for any finite x. H(x) - t is exact (Sterbenz for t >= 1/2)."""
    return x * (tf.cast(x > 0.0, x.dtype) - t) + tf.nn.softplus(-tf.abs(x))


def cross_entropy_grad(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Eq. (2): dL_CE/dx = p - t, p = sigmoid(x)."""
    return tf.sigmoid(x) - t


def _all_valid_finite_and_in_range(x: tf.Tensor, t: tf.Tensor | None, valid: tf.Tensor | None) -> tf.Tensor:
    """Every valid x finite and, when t is given, every valid t in [0, 1] (which NaN fails): one
    boolean reduction, no host round trip. Written with is_finite and comparisons, which no graph
    optimiser may fold (x * 0 could be folded to 0, hiding a NaN)."""
    ok = tf.math.is_finite(x)
    if t is not None:
        ok = ok & (t >= 0.0) & (t <= 1.0)
    if valid is not None:
        ok = ok | tf.logical_not(valid)
    return tf.reduce_all(ok)


def _prepare(y_true, pred: tf.Tensor, valid: tf.Tensor | None, bins: int):
    """L_i (Eq. 1), dL_i/dx_i (Eq. 2), the region index of g_i = |p_i - t_i| (Eq. 3) with masked
    entries in the spare region, and the batch's ok flag (every valid entry finite and in range).

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
    ok = ok & _all_valid_finite_and_in_range(x, t if not classes and target.dtype != tf.bool else None, valid)
    per_entry_grad, per_entry_loss = cross_entropy_grad(x, t), cross_entropy(x, t)
    ind = region_index(tf.abs(per_entry_grad), bins, valid)  # Eq. (3)
    # dL/dt = -x (spec.md 5), for a float target shaped like pred that the tape may watch
    target_terms = (target, -x) if not classes and target.dtype.is_floating else None
    return per_entry_loss, per_entry_grad, ind, ok, valid, target_terms


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
        sync_density: sum the region counts and N over the replicas in sync (one all_reduce of
            bins + 1 int64 values per call, in a replica context) so that beta is the global
            batch's and the replicas' losses and gradients sum to the global batch's (spec.md
            section 11). Default: False (each replica harmonizes its own batch).
        name: the loss's name. Default: ``"ghm_c_loss"``.
    """

    def __init__(self, bins: int = 30, momentum: float = 0.0, dialect: str = "paper", reduction: str = "mean",
                 loss_weight: float = 1.0, sync_density: bool = False, name: str | None = "ghm_c_loss") -> None:
        super().__init__(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction,
                         loss_weight=loss_weight, name=name, sync_density=sync_density)

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
