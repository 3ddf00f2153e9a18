"""The harmonizing weight beta in JAX (spec.md sections 2.3 and 4), in pieces named after the
reference functions they compute (``reference.equations`` / ``reference.ghm``):

    region_index    ind(g) = min(floor(g M), M - 1)                  unit regions, Sec. 3.2
    region_counts   R_j, exact integer counts                        Eq. (9)
    ema             S_j = alpha S_j + (1 - alpha) R_j                 Eq. (12)
    harmonize       beta_j = N / (S_j M) ("paper") or N / (A_j n)     Eqs. (10), (13); mmdet dialect

beta depends on an entry only through its region, so ``harmonize`` returns one value per region
(bins + 1 values: the spare last slot holds the masked entries, weight 0), gathered per entry
by ``harmonized_loss``. Counts are int32 under JAX's default 32-bit mode (exact up to 2^31 - 1
entries per call) and int64 with ``jax_enable_x64``. Static shapes, no host round trip.
"""

from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp


class GHMState(NamedTuple):
    """The EMA region state of spec.md section 4 (S of Eq. 12, or the mmdet accumulator), a pytree:
    ``ema`` float32 (bins,), ``initialized`` bool (): whether a call with a valid entry has set it."""

    ema: jax.Array
    initialized: jax.Array


def init_state(bins: int) -> GHMState:
    """The state before the first call: zeros, not initialized."""
    return GHMState(jnp.zeros((bins,), jnp.float32), jnp.zeros((), bool))


def x64_enabled() -> bool:
    """jax_enable_x64 as this thread sees it (inside a ``jax.enable_x64`` context too)."""
    # The attribute is how JAX documents reading a context-manager flag: Config sets it at runtime,
    # so its stub lacks it, and config.read() refuses such flags in JAX 0.4.x.
    return bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]


def count_dtype():
    """int64 where JAX allows it (jax_enable_x64), else int32."""
    return jnp.int64 if x64_enabled() else jnp.int32


def region_index(g: jax.Array, bins: int, valid: jax.Array | None = None) -> jax.Array:
    """ind(g) = min(floor(g * M), M - 1), with g = 1 in the last region (spec.md 2.3); ``g`` >= 0.
    A NaN or infinite g (only in a poisoned batch) lands in the last region, never out of range;
    entries not ``valid`` go to the spare region M."""
    g = jnp.where(g <= 1.0, g, 1.0)  # NaN <= 1 is False
    ind = jnp.minimum((g * bins).astype(jnp.int32), bins - 1)  # truncation == floor for g >= 0
    return ind if valid is None else jnp.where(valid, ind, bins)


def region_counts(ind: jax.Array, bins: int, bad: jax.Array | None = None) -> jax.Array:
    """R_j as exact integer counts, length bins + 1 (the last slot counts the masked entries), or
    bins + 2 with a per-entry flag ``bad`` (valid entries that poison the batch): the last slot
    counts them, in place of their regions, so the check is computed in the loop that forms the
    histogram's codes, not in a reduction pass of its own. A call too large for the count dtype is
    refused when it is traced (its size is static)."""
    dtype = count_dtype()
    if ind.size > jnp.iinfo(dtype).max:
        raise ValueError(
            f"{ind.size} entries in one call: more than {jnp.dtype(dtype).name} counts hold exactly "
            f"({jnp.iinfo(dtype).max}); enable 64-bit counts with "
            f"jax.config.update('jax_enable_x64', True), or split the call"
        )
    if bad is not None:
        ind = jnp.where(bad, bins + 1, ind)
    flat = ind.reshape(-1)
    slots = bins + 1 + int(bad is not None)
    k = max(j for j in (1, 2, 3, 4) if j == 1 or slots**j <= _PACKED_SLOTS)
    body = flat.size - flat.size % k
    if k == 1 or flat.size < _PACKED_MIN:  # small: the plain scatter is quick, and quicker to compile
        return jnp.zeros((slots,), dtype).at[flat].add(1, mode="promise_in_bounds")
    # XLA's CPU scatter is a serial loop of a few ns per update: k indices packed into one code
    # i_1 S^(k-1) + ... + i_k (S = slots) are counted in N / k updates, and each position's counts
    # are the sums of that joint histogram over the other positions (as impl_tf does).
    letters = flat[:body].reshape(-1, k)
    code = letters[:, 0]
    for j in range(1, k):
        code = code * slots + letters[:, j]
    joint_dtype = jnp.int32 if body // k <= jnp.iinfo(jnp.int32).max else dtype  # int32: half the scatter's traffic
    # ind is in [0, slots) by construction (region_index): no bounds check per update
    joint = jnp.zeros((slots**k,), joint_dtype).at[code].add(1, mode="promise_in_bounds").reshape((slots,) * k)
    counts = functools.reduce(
        operator.add, (joint.sum(axis=tuple(a for a in range(k) if a != j), dtype=dtype) for j in range(k))
    )
    if body < flat.size:
        counts = counts.at[flat[body:]].add(1, mode="promise_in_bounds")
    return counts


_PACKED_SLOTS = 1 << 15  # the joint histogram stays in the L1/L2 cache (128 KB of int32)
_PACKED_MIN = 1 << 16  # entries from which the packed counts pay for their longer compilation


def ema(s_prev: jax.Array, r: jax.Array, alpha: float) -> jax.Array:
    """Eq. (12): S^(t) = alpha S^(t-1) + (1 - alpha) R^(t)."""
    return alpha * s_prev + (1.0 - alpha) * r


def harmonize(
    counts: jax.Array,
    ok: jax.Array,
    *,
    bins: int,
    momentum: float,
    dialect: str,
    dtype,
    state: jax.Array | None = None,
    initialized: jax.Array | None = None,
):
    """Per-region beta from the counts of ``region_counts`` (spec.md section 4).

    Returns (beta, new_state, new_initialized, n_valid): ``beta`` has bins + 1 values, the last
    (masked entries) 0, and NaN for every region when ``ok`` is False (a poisoned batch). The EMA
    ``state`` / ``initialized`` are needed only when momentum > 0, and change only when the call
    has a valid entry and ``ok``; otherwise they are returned as given.

    "paper": beta_j = N / (S_j M), S = R, or the EMA of Eq. (12) with S^(0) := R^(1).
    "mmdet": beta_j = N / (A_j n), n = #non-empty regions, A = R, or an accumulator from zeros
             updated by Eq. (12) only where R_j > 0."""
    r = counts[:bins]
    n_valid = jnp.sum(r)
    rf = r.astype(dtype)
    occupied = r > 0
    if momentum == 0.0:
        s = rf
    else:
        assert state is not None and initialized is not None, "momentum > 0 needs the EMA state"
        if dialect == "paper":
            s = jnp.where(initialized, ema(state.astype(dtype), rf, momentum), rf)
        else:
            prev = state.astype(dtype)
            s = jnp.where(occupied, ema(prev, rf, momentum), prev)
    n_regions = bins if dialect == "paper" else jnp.maximum(jnp.sum(occupied), 1).astype(dtype)
    beta = jnp.where(occupied, n_valid.astype(dtype) / jnp.where(occupied, s * n_regions, 1.0), 0.0)
    beta = jnp.concatenate([jnp.where(ok, beta, jnp.nan), jnp.zeros((1,), dtype)])
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    assert state is not None and initialized is not None, "momentum > 0 needs the EMA state"
    update = ok & (n_valid > 0)
    return beta, jnp.where(update, s.astype(state.dtype), state), initialized | update, n_valid


SECOND_ORDER_ERROR = (
    "the GHM losses are differentiable once: their gradient is formed with the loss (beta is a "
    "constant for backprop, spec.md 5), so it cannot be differentiated again (a gradient penalty, a "
    "Hessian-vector product through the loss)"
)


@jax.custom_jvp
def _differentiable_once(pred, target, value):
    """``value`` (a gradient formed without autodiff), tied to ``pred`` and ``target``:
    differentiating it with respect to either (only a second derivative does: d/dpred or d/dtarget
    of a gradient) raises instead of returning a silent 0. JAX calls this rule only when a tangent
    is not symbolically zero, so a first derivative never reaches it."""
    return value


@_differentiable_once.defjvp
def _differentiable_once_jvp(primals, tangents):
    raise NotImplementedError(SECOND_ORDER_ERROR)


@jax.custom_vjp
def _attach(pred, target, loss, grad, target_grad):
    """``loss`` whose gradient with respect to ``pred`` is ``grad`` and to ``target`` is
    ``target_grad`` (both computed with it: beta is a constant for backprop, spec.md 5)."""
    return loss


def _attach_fwd(pred, target, loss, grad, target_grad):
    # zero-size arrays carry the inputs' dtypes into the backward (residuals must be arrays)
    # tied to both inputs: a tangent entering through the target alone (d/dtarget of d loss/d pred,
    # a Hessian in the target) must raise too, not find a gradient that does not depend on it
    grad, target_grad = _differentiable_once(pred, target, grad), _differentiable_once(pred, target, target_grad)
    return loss, (grad, target_grad, jnp.zeros((0,), pred.dtype), jnp.zeros((0,), target.dtype))


def _attach_bwd(res, upstream):
    grad, target_grad, pred_like, target_like = res
    # The upstream gradient (a loss scale included) multiplies in the compute dtype; one cast after
    d_pred = (upstream * grad).astype(pred_like.dtype)
    floating = jnp.issubdtype(target_like.dtype, jnp.floating)
    d_target = (upstream * target_grad).astype(target_like.dtype) if floating else None
    return d_pred, d_target, None, None, None


_attach.defvjp(_attach_fwd, _attach_bwd)


def _accurate_sum(values: jax.Array) -> jax.Array:
    """Each row (last axis) in the values' dtype, the row sums in float32 pairwise (XLA reduces in
    a tree), then float64 where enabled: exact at 2^24 terms to float32 rounding."""
    rows = jnp.sum(values, axis=-1) if values.ndim > 1 else values
    return jnp.sum(rows.astype(jnp.float64 if x64_enabled() else rows.dtype)).astype(values.dtype)


def _materialized(table: jax.Array) -> jax.Array:
    """``table`` computed once, before the per-entry gather reads it: XLA would otherwise fuse the
    table's computation (a division and the count sums) into the gather's loop, per entry. An
    identity scatter, which XLA does not fuse into its consumers (``lax.optimization_barrier``
    would not do: XLA's CPU pipeline removes barriers before fusion)."""
    slots = jnp.arange(table.shape[0])
    return jnp.zeros_like(table).at[slots].add(table, mode="promise_in_bounds", unique_indices=True)


def harmonized_loss(
    pred,
    target,
    per_entry_loss,
    per_entry_grad,
    per_entry_target_grad,
    ind,
    ok,
    valid,
    bad,
    *,
    bins,
    momentum,
    dialect,
    reduction,
    loss_weight,
    state,
    diagnose=None,
):
    """Eqs. (11) / (19): loss_weight * reduction(beta_i * L_i), its gradients attached. Masked
    entries' products are 0 whatever NaN or Inf they hold. ``bad`` flags, per entry, the valid
    entries that poison the batch (or is None): the histogram counts them in the slot bins + 1, and
    the batch is ok when ``ok`` and that slot is empty. Returns (loss, new_state), and the
    diagnostics of spec.md 13 as a third value when ``diagnose`` (``_diagnostics.collector``) is
    given."""
    dtype = per_entry_loss.dtype
    counts = region_counts(ind, bins, bad)
    if bad is not None:
        ok = ok & (counts[bins + 1] == 0)
        counts = counts[: bins + 1]
    beta, new_ema, new_initialized, n_valid = harmonize(
        counts,
        ok,
        bins=bins,
        momentum=momentum,
        dialect=dialect,
        dtype=dtype,
        state=None if state is None else state.ema,
        initialized=None if state is None else state.initialized,
    )
    new_state = None if state is None else GHMState(new_ema, new_initialized)
    scale = jnp.asarray(loss_weight, dtype)
    if reduction == "mean":
        scale = scale / jnp.maximum(n_valid, 1).astype(dtype)
    # ind is in [0, bins] by construction: no bounds check per entry. It holds no poison slot (a
    # poisoned batch's beta is NaN in every region), so the gather does not recompute the check.
    w = _materialized(beta * scale).at[ind].get(mode="promise_in_bounds")

    def weigh(terms):
        return w * terms if valid is None else jnp.where(valid, w * terms, 0.0)

    grad, target_grad, weighted = weigh(per_entry_grad), weigh(per_entry_target_grad), weigh(per_entry_loss)
    loss = weighted if reduction == "none" else _accurate_sum(weighted)
    if diagnose is None:
        return _attach(pred, target, loss, grad, target_grad), new_state
    diagnostics = diagnose(
        ind=ind,
        per_entry_grad=per_entry_grad,
        counts=counts,
        ok=ok,
        beta=beta,
        new_ema=new_ema,
        n_valid=n_valid,
        bins=bins,
        momentum=momentum,
        reduction=reduction,
        loss_weight=loss_weight,
    )
    return _attach(pred, target, loss, grad, target_grad), new_state, jax.lax.stop_gradient(diagnostics)
