"""GHM-R for TensorFlow / Keras: the gradient harmonized Authentic Smooth L1 (spec.md section 3)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ._checks import FLOATING, as_tensor, check_hyper, check_mu, check_shape, compute_dtype, same_shape, to_mask
from ._harmonize import harmonized_loss, region_index
from ._loss import GHMLossBase


def _asl1_terms(d: tf.Tensor, mu: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(ASL1(d), dASL1/dd) without squaring d or mu (spec.md 3): with s = max(|d|, mu) and
    r = sqrt((d/s)^2 + (mu/s)^2) in [1, sqrt 2], rho = s r = hypot(d, mu), u = d / rho = (d/s) / r
    (Eq. 18) and ASL1 = d u / (1 + mu / rho) (Eq. 17, no cancellation); finite for every finite d."""
    mu = tf.constant(mu, d.dtype)
    s = tf.maximum(tf.abs(d), mu)
    d_s, mu_s = d / s, mu / s
    r = tf.sqrt(d_s * d_s + mu_s * mu_s)
    u = d_s / r
    return d * u / (1.0 + mu_s / r), u


def asl1(d: tf.Tensor, mu: float) -> tf.Tensor:
    """Eq. (17): ASL1(d) = sqrt(d^2 + mu^2) - mu, finite for every finite d."""
    return _asl1_terms(d, mu)[0]


def asl1_grad(d: tf.Tensor, mu: float) -> tf.Tensor:
    """Eq. (18): dASL1/dd = d / sqrt(d^2 + mu^2)."""
    return _asl1_terms(d, mu)[1]


def _prepare(y_true, pred: tf.Tensor, valid: tf.Tensor | None, mu: float, bins: int):
    """ASL1(d_i) (Eq. 17), its gradient (Eq. 18), the region index of gr_i = |dASL1/dd| with
    masked entries in the spare region, the ok flag (every valid residual finite), and the mask
    (``harmonized_loss`` zeroes the masked entries' products, as in GHM-C)."""
    target = as_tensor("y_true", y_true, allowed=(FLOATING,))
    check_shape("y_true", target, pred.shape)
    dtype = compute_dtype(pred)
    x, t = tf.stop_gradient(tf.cast(pred, dtype)), tf.cast(target, dtype)
    d = x - same_shape("y_true", t, x)
    finite = tf.math.is_finite(d)  # not d * 0 == 0, which a graph optimiser may fold
    if valid is not None:
        valid = same_shape("label_weight", valid, x)
        finite = finite | tf.logical_not(valid)
    ok = tf.reduce_all(finite)
    per_entry_loss, per_entry_grad = _asl1_terms(d, mu)
    ind = region_index(tf.abs(per_entry_grad), bins, valid)
    # d ASL1(x - t) / dt = -d ASL1 / dd (spec.md 5), for a target the tape may watch
    return per_entry_loss, per_entry_grad, ind, ok, valid, (target, -per_entry_grad)


@keras.saving.register_keras_serializable(package="ghm")
class GHMRLoss(GHMLossBase):
    """GHM-R loss (Li et al., AAAI 2019, Eqs. 17-19) as a Keras loss: Authentic Smooth L1
    ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` of ``d = y_pred - y_true``, reweighted by the inverse
    density of ``gr = |d| / sqrt(d^2 + mu^2)``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * ASL1(d_i)`` ("mean"); ASL1 and gr are
    evaluated without overflow for every finite residual. Dialects, Keras masks,
    ``sample_weight`` (a mask, shaped like ``y_pred`` or per anchor), NaN handling, dtypes and
    the EMA variables are as in :class:`GHMCLoss` (spec.md sections 4-8).

    Args:
        mu: the ASL1 parameter, in [1e-30, 1e30]. Default: 0.02.
        bins: number of unit regions M. Default: 10.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        loss_weight: multiplier of the loss (the released configs use 10). Default: 1.0.
        sync_density: sum the region counts and N over the replicas in sync (one all_reduce of
            bins + 1 int64 values per call, in a replica context) so that beta is the global
            batch's and the replicas' losses and gradients sum to the global batch's (spec.md
            section 11). Default: False (each replica harmonizes its own batch).
        name: the loss's name. Default: ``"ghm_r_loss"``.
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0, dialect: str = "paper",
                 reduction: str = "mean", loss_weight: float = 1.0, sync_density: bool = False,
                 name: str | None = "ghm_r_loss") -> None:
        check_mu(mu)
        super().__init__(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction,
                         loss_weight=loss_weight, name=name, sync_density=sync_density)
        self.mu = float(mu)

    def _prepare(self, y_true, pred, valid):
        return _prepare(y_true, pred, valid, self.mu, self.bins)

    def get_config(self) -> dict:
        return {**super().get_config(), "mu": self.mu}


def ghm_r_loss(y_true, y_pred, label_weight=None, *, mu: float = 0.02, bins: int = 10, dialect: str = "paper",
               reduction: str = "mean", loss_weight: float = 1.0) -> tf.Tensor:
    """Stateless GHM-R (no momentum), Keras argument order; same semantics as :class:`GHMRLoss`
    (no distribution scaling: this is the plain function)."""
    check_mu(mu)
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    pred = as_tensor("y_pred", y_pred, allowed=(FLOATING,))
    valid = None if label_weight is None else to_mask("label_weight", label_weight, pred)
    loss, _, _ = harmonized_loss(pred, *_prepare(y_true, pred, valid, mu, bins), bins=bins, momentum=0.0,
                                 dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    return loss
