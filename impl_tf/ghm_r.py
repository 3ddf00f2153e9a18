"""GHM-R for TensorFlow / Keras: the gradient harmonized Authentic Smooth L1 (spec.md section 3)."""

from __future__ import annotations

import tensorflow as tf

from . import _diagnostics
from ._checks import FLOATING, as_tensor, check_hyper, check_mu, check_shape, compute_dtype, same_shape, to_mask
from ._harmonize import harmonized_loss, poison_in_counts, region_index


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
    (``harmonized_loss`` zeroes the masked entries' products, as in GHM-C); under XLA the check is
    the per-entry flag ``bad`` instead, returned last, as in GHM-C."""
    target = as_tensor("y_true", y_true, allowed=(FLOATING,))
    check_shape("y_true", target, pred.shape)
    dtype = compute_dtype(pred)
    x, t = tf.stop_gradient(tf.cast(pred, dtype)), tf.cast(target, dtype)
    d = x - same_shape("y_true", t, x)
    finite = tf.math.is_finite(d)  # not d * 0 == 0, which a graph optimiser may fold
    if valid is not None:
        valid = same_shape("label_weight", valid, x)
    bad, ok = None, tf.constant(True)
    if poison_in_counts():  # XLA: a per-entry flag, computed with the region index, counted in slot M + 1
        bad = tf.logical_not(finite) if valid is None else tf.logical_not(finite) & valid
    else:
        ok = tf.reduce_all(finite if valid is None else finite | tf.logical_not(valid))
    per_entry_loss, per_entry_grad = _asl1_terms(d, mu)
    ind = region_index(tf.abs(per_entry_grad), bins, valid)
    # d ASL1(x - t) / dt = -d ASL1 / dd (spec.md 5), for a target the tape may watch
    return per_entry_loss, per_entry_grad, ind, ok, valid, (target, -per_entry_grad), bad


def ghm_r_loss(
    y_true,
    y_pred,
    label_weight=None,
    *,
    mu: float = 0.02,
    bins: int = 10,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
    diagnostics: bool = False,
):
    """Stateless GHM-R (no momentum), Keras argument order; same semantics as :class:`GHMRLoss`
    (no distribution scaling: this is the plain function). With ``diagnostics=True`` returns
    ``(loss, Diagnostics)``: what the call did (spec.md 13), else the loss."""
    check_mu(mu)
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    pred = as_tensor("y_pred", y_pred, allowed=(FLOATING,))
    valid = None if label_weight is None else to_mask("label_weight", label_weight, pred)
    out = harmonized_loss(
        pred,
        *_prepare(y_true, pred, valid, mu, bins),
        bins=bins,
        momentum=0.0,
        dialect=dialect,
        reduction=reduction,
        loss_weight=loss_weight,
        diagnose=_diagnostics.collector("r") if diagnostics else None,
    )
    return (out[0], out[3]) if diagnostics else out[0]
