"""GHM-C for JAX: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _diagnostics
from ._checks import (
    BOOL,
    FLOATING,
    INTEGER,
    as_array,
    check_hyper,
    check_state,
    compute_dtype,
    host_labels,
    is_class_index_target,
    valid_mask,
)
from ._harmonize import GHMState, count_dtype, harmonized_loss, region_index


def cross_entropy(x: jax.Array, t: jax.Array) -> jax.Array:
    """Eq. (1) for logits and soft targets, max(x, 0) - x t + log(1 + e^-|x|), written as
    x (H(x) - t) + softplus(-|x|) with H(x) = [x > 0]: both terms are >= 0, so nothing cancels
    (spec.md 8) and nothing overflows for any finite x."""
    return x * ((x > 0).astype(x.dtype) - t) + jax.nn.softplus(-jnp.abs(x))


def cross_entropy_grad(x: jax.Array, t: jax.Array) -> jax.Array:
    """Eq. (2): dL_CE/dx = p - t, p = sigmoid(x)."""
    return jax.nn.sigmoid(x) - t


def _targets(pred, target, valid, dtype):
    """(t, ok): the per-entry target and whether every valid entry is in range (spec.md 6-7)."""
    if is_class_index_target(target, pred):  # class indices; label C = background (an all-zero row)
        n_classes = pred.shape[-1]
        # compared in the widest integer JAX holds (int64 under x64: an int64 or uint64 label 2^32 + 1
        # must stay out of range, not wrap to class 1); narrower labels widen exactly, and a uint
        # value past the signed range wraps negative, out of range too
        labels = target.astype(count_dtype())
        in_range = (labels >= 0) & (labels <= n_classes)
        if valid is not None:
            in_range |= ~jnp.any(valid, axis=-1)
        return jax.nn.one_hot(labels, n_classes, dtype=dtype), jnp.all(in_range), False
    t = target.astype(dtype)
    if target.dtype == jnp.bool_:
        return t, jnp.ones((), bool), False
    return t, jnp.ones((), bool), True


def ghm_c_loss(
    pred,
    target,
    label_weight=None,
    *,
    bins: int = 30,
    momentum: float = 0.0,
    state: GHMState | None = None,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
    diagnostics: bool = False,
):
    """GHM-C (Li et al., AAAI 2019, Eqs. 1-13): sigmoid cross entropy reweighted by the inverse
    density of g = |sigmoid(pred) - target|; returns ``(loss, new_state)``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * CE(pred_i, target_i)`` ("mean"), with
    beta from the unit regions (spec.md 4): "paper", beta_i = N / (S_ind(i) * bins); "mmdet" (the
    official code), beta_i = N / (A_ind(i) * n), n the non-empty regions. beta is a constant for
    ``jax.grad``: d loss / d pred_i = loss_weight * beta_i * (p_i - t_i) / N (a float target gets
    -loss_weight * beta_i * pred_i / N). Pure: jit, grad and vmap compatible, no host sync. A
    NaN/Inf or out-of-range value in a valid entry gives a NaN loss and returns the state as it
    was; no valid entry gives 0.

    Args:
        pred: logits of any shape, e.g. (N, C); float16/bfloat16 are computed in float32.
        target: shaped like ``pred`` (float in [0, 1], bool, or integer 0/1), or integer class
            indices of shape ``pred.shape[:-1]`` with index C = background (needs C >= 2).
        label_weight: a mask (> 0 valid), like ``pred`` or ``pred.shape[:-1]``. Default: None (all valid).
        bins: number of unit regions M. Default: 30.
        momentum: EMA momentum in [0, 1); 0 disables the EMA. Default: 0.0.
        state: the EMA state from the previous call (``init_state(bins)`` or None for a fresh one);
            must be None without momentum. Default: None.
        dialect: "paper" or "mmdet". Default: "paper".
        reduction: "mean", "sum" or "none" (per entry beta * CE). Default: "mean".
        loss_weight: multiplier of the loss. Default: 1.0.
        diagnostics: also return what the call did (spec.md 13): a ``Diagnostics`` pytree of
            counts, density, beta and gradient masses per region, positive fraction. Default: False.

    Returns:
        (loss, new_state): new_state is None without momentum. Use ``jax.value_and_grad(f,
        has_aux=True)`` with the state as the auxiliary output. With ``diagnostics=True``,
        (loss, new_state, Diagnostics).
    """
    check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    state = check_state(state, bins, momentum)
    pred = as_array("pred", pred, allowed=(FLOATING,))
    target = as_array("target", host_labels(target), allowed=(FLOATING, BOOL, INTEGER))
    valid = valid_mask(label_weight, pred)
    dtype = compute_dtype(pred)
    x = jax.lax.stop_gradient(pred.astype(dtype))
    t, ok, check_range = _targets(pred, jax.lax.stop_gradient(target), valid, dtype)
    entry_ok = jnp.isfinite(x) & ((t >= 0) & (t <= 1) if check_range else True)
    per_entry_grad, per_entry_loss = cross_entropy_grad(x, t), cross_entropy(x, t)
    ind = region_index(jnp.abs(per_entry_grad), bins, valid)  # Eq. (3)
    # a valid entry that is not entry_ok poisons the batch: counted in the slot bins + 1
    bad = ~entry_ok if valid is None else valid & ~entry_ok
    return harmonized_loss(
        pred,
        target,
        per_entry_loss,
        per_entry_grad,
        -x,
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
        diagnose=_diagnostics.collector(t == 1) if diagnostics else None,
    )
