"""GHM-R for JAX: the gradient harmonized Authentic Smooth L1 (spec.md section 3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ghm_args import check_mu

from . import _diagnostics
from ._checks import FLOATING, as_array, check_hyper, check_shape, check_state, check_static, compute_dtype, valid_mask
from ._harmonize import GHMState, harmonized_loss, region_index


def _asl1_terms(d: jax.Array, mu: float) -> tuple[jax.Array, jax.Array]:
    """(ASL1(d), dASL1/dd) without squaring d or mu (spec.md 3): with s = max(|d|, mu) and
    r = sqrt((d/s)^2 + (mu/s)^2) in [1, sqrt 2], rho = s r = hypot(d, mu), u = d / rho = (d/s) / r
    (Eq. 18) and ASL1 = d u / (1 + mu / rho) (Eq. 17, no cancellation); finite for every finite d."""
    mu_d = jnp.asarray(mu, d.dtype)
    s = jnp.maximum(jnp.abs(d), mu_d)
    d_s, mu_s = d / s, mu_d / s
    r = jnp.sqrt(d_s * d_s + mu_s * mu_s)
    u = d_s / r
    return d * u / (1.0 + mu_s / r), u


def asl1(d: jax.Array, mu: float) -> jax.Array:
    """Eq. (17): ASL1(d) = sqrt(d^2 + mu^2) - mu, finite for every finite d."""
    return _asl1_terms(d, mu)[0]


def asl1_grad(d: jax.Array, mu: float) -> jax.Array:
    """Eq. (18): dASL1/dd = d / sqrt(d^2 + mu^2)."""
    return _asl1_terms(d, mu)[1]


def ghm_r_loss(
    pred,
    target,
    label_weight=None,
    *,
    mu: float = 0.02,
    bins: int = 10,
    momentum: float = 0.0,
    state: GHMState | None = None,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
    diagnostics: bool = False,
):
    """GHM-R (Li et al., AAAI 2019, Eqs. 17-19): Authentic Smooth L1 ``sqrt(d^2 + mu^2) - mu`` of
    d = pred - target, reweighted by the inverse density of gr = |d| / sqrt(d^2 + mu^2); returns
    ``(loss, new_state)``. Dialects, masking, NaN policy, state and gradients (d loss / d pred_i =
    loss_weight * beta_i * d_i / sqrt(d_i^2 + mu^2) / N; its negative for a float target) as in
    :func:`ghm_c_loss`.

    Args:
        pred, target: float arrays of one shape, e.g. (N, 4).
        label_weight: a mask (> 0 valid), like ``pred`` or ``pred.shape[:-1]``. Default: None.
        mu: the ASL1 parameter, in [1e-30, 1e30]. Default: 0.02.
        bins: number of unit regions M. Default: 10.
        momentum, state, dialect, reduction, loss_weight, diagnostics: as in :func:`ghm_c_loss`.
            Defaults: 0.0, None, "paper", "mean", 1.0, False (GHM-R's positive_fraction is NaN).
    """
    check_static(mu=mu)
    check_mu(mu)
    check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    state = check_state(state, bins, momentum)
    pred = as_array("pred", pred, allowed=(FLOATING,))
    target = as_array("target", target, allowed=(FLOATING,))
    check_shape("target", target, pred.shape)
    valid = valid_mask(label_weight, pred)
    dtype = compute_dtype(pred)
    d = jax.lax.stop_gradient(pred.astype(dtype) - target.astype(dtype))
    finite = jnp.isfinite(d)
    ok = jnp.ones((), bool)  # a valid non-finite residual poisons the batch: counted in the slot bins + 1
    per_entry_loss, per_entry_grad = _asl1_terms(jnp.where(finite, d, 0.0), mu)
    per_entry_loss = jnp.where(finite, per_entry_loss, jnp.nan)
    ind = region_index(jnp.abs(per_entry_grad), bins, valid)
    bad = ~finite if valid is None else valid & ~finite
    return harmonized_loss(
        pred,
        target,
        per_entry_loss,
        per_entry_grad,
        -per_entry_grad,
        ind,
        ok,
        valid,
        bad,
        bins=bins,
        momentum=momentum,
        dialect=dialect,
        reduction=reduction,
        loss_weight=loss_weight,
        state=state,
        diagnose=_diagnostics.collector() if diagnostics else None,
    )
