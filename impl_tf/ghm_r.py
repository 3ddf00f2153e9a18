"""GHM-R for TensorFlow / Keras: the gradient harmonized Authentic Smooth L1 (spec.md section 3)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ._checks import anchor_mask, as_tensor, check_hyper, check_mu, check_shape, compute_dtype
from ._harmonize import ghm_reduce
from ._loss import GHMLossBase


def _prepare(y_true, y_pred, label_weight, mu: float):
    """Per-entry ASL1 (Eq. 17), gradient norm gr (Eq. 18), the valid mask and the ok flag."""
    pred = as_tensor("y_pred", y_pred, kinds="f")
    target = as_tensor("y_true", y_true, kinds="f")
    check_shape("y_true", target, tuple(pred.shape))
    dtype = compute_dtype(pred)
    d = tf.cast(pred, dtype) - tf.cast(target, dtype)
    valid = tf.ones_like(d, dtype=tf.bool) if label_weight is None else anchor_mask(label_weight, pred)
    ok = tf.reduce_all(tf.math.is_finite(d) | tf.logical_not(valid))
    d_safe = tf.where(valid, d, tf.zeros([], dtype))  # masked entries: no NaN reaches their gradient
    root = tf.sqrt(d_safe * d_safe + mu * mu)
    per_entry = d_safe * d_safe / (root + mu)  # = root - mu, without its cancellation for |d| << mu
    g = tf.stop_gradient(tf.abs(d_safe) / root)
    return per_entry, g, valid, ok


@keras.saving.register_keras_serializable(package="ghm")
class GHMRLoss(GHMLossBase):
    """GHM-R loss (Li et al., AAAI 2019, Eqs. 17-19) as a Keras loss: Authentic Smooth L1
    ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` of ``d = y_pred - y_true``, reweighted by the inverse
    density of ``gr = |d| / sqrt(d^2 + mu^2)``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * ASL1(d_i)`` ("mean"). Dialects,
    ``sample_weight`` (a mask, shaped like ``y_pred`` or per anchor), NaN handling, dtypes and
    the EMA variables are as in :class:`GHMCLoss` (spec.md sections 4-8).

    Args:
        mu: the ASL1 parameter, > 0. Default: 0.02.
        bins: number of unit regions M. Default: 10.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        loss_weight: multiplier of the loss (the released configs use 10). Default: 1.0.
        name: the loss's name. Default: ``"ghm_r_loss"``.
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0, dialect: str = "paper",
                 reduction: str = "mean", loss_weight: float = 1.0, name: str | None = "ghm_r_loss") -> None:
        check_mu(mu)
        super().__init__(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction,
                         loss_weight=loss_weight, name=name)
        self.mu = float(mu)

    def _prepare(self, y_true, y_pred, sample_weight):
        return _prepare(y_true, y_pred, sample_weight, self.mu)

    def get_config(self) -> dict:
        return {**super().get_config(), "mu": self.mu}


def ghm_r_loss(y_true, y_pred, label_weight=None, *, mu: float = 0.02, bins: int = 10, dialect: str = "paper",
               reduction: str = "mean", loss_weight: float = 1.0) -> tf.Tensor:
    """Stateless GHM-R (no momentum), Keras argument order; same semantics as :class:`GHMRLoss`."""
    check_mu(mu)
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    loss, _, _ = ghm_reduce(*_prepare(y_true, y_pred, label_weight, mu), bins=bins, momentum=0.0, dialect=dialect,
                            reduction=reduction, loss_weight=loss_weight)
    return loss
