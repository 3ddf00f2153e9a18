"""What one call of the loss did (spec.md section 13), as a pytree returned with the loss.

Computed inside ``harmonized_loss`` (its ``diagnose`` hook) from the region index, counts, beta
and EMA state the loss has already formed; the one extra pass is a histogram of
|dL_i/dpred_i| (g for GHM-C, gr for GHM-R) weighted by entry, which gives both gradient masses
(beta is constant per region). jit, vmap and scan compatible; no host sync.

    loss, state, d = ghm_c_loss(logits, targets, weights, bins=30, momentum=0.75, state=state,
                                diagnostics=True)
    d.nonempty, d.grad_share
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp


def shares(mass: jax.Array) -> jax.Array:
    """mass_j / sum_k mass_k (0 everywhere when the sum is 0; NaN for a poisoned call)."""
    total = jnp.sum(mass, axis=-1, keepdims=True)
    nonzero = total != 0  # NaN != 0: a poisoned call stays NaN
    return jnp.where(nonzero, mass / jnp.where(nonzero, total, 1), 0)


class Diagnostics(NamedTuple):
    """What one call did (spec.md 13), with M = bins and c = 1/N ("mean") or 1 ("sum", "none").

    counts: R_j (M,), valid: N, nonempty: #{j : R_j > 0}: the loss's count dtype (int32, int64
        with jax_enable_x64).
    density: the S_j the weights were formed from (R_j without momentum; the EMA / mmdet
        accumulator after the call's update with it).
    beta: beta_j, the weight of region j in this call, 0 for an empty region.
    grad_mass: sum over region j's valid entries of |d loss / d pred_i|.
    plain_mass: c * sum |dL_i / dpred_i|: the same for plain CE (GHM-C) or ASL1 (GHM-R).
    positive_fraction: GHM-C, the share of valid entries whose target is 1; GHM-R, NaN.
    A call with no valid entry: 0s (density: the state as it stands). A poisoned call: integer
    fields 0, float fields NaN. ``grad_share`` / ``plain_share``: the masses over their sums.
    A pytree (a NamedTuple): under ``jax.vmap`` every field gains the mapped axis."""

    counts: jax.Array
    valid: jax.Array
    nonempty: jax.Array
    density: jax.Array
    beta: jax.Array
    grad_mass: jax.Array
    plain_mass: jax.Array
    positive_fraction: jax.Array

    @property
    def grad_share(self) -> jax.Array:
        """Each region's share of the harmonized gradient's L1 mass (Figure 1, right panel)."""
        return shares(self.grad_mass)

    @property
    def plain_share(self) -> jax.Array:
        """Each region's share of the plain CE / ASL1 gradient's L1 mass."""
        return shares(self.plain_mass)


def collect(
    *,
    positive,
    ind,
    per_entry_grad,
    counts,
    ok,
    beta,
    new_ema,
    n_valid,
    bins: int,
    momentum: float,
    reduction: str,
    loss_weight: float,
) -> Diagnostics:
    """The hook ``harmonized_loss`` calls with its internals. ``positive``: whether each entry's
    target is 1 (GHM-C), or None (GHM-R); ``ind`` puts masked entries in slot ``bins`` (their
    per_entry_grad, possibly NaN, lands there and is dropped); ``new_ema``: the EMA after the call."""
    dtype = beta.dtype
    flat = ind.reshape(-1)
    norms = jnp.abs(per_entry_grad).reshape(-1)  # |dL_i/dx_i|: g (GHM-C) or gr (GHM-R)
    plain = jnp.zeros((bins + 1,), dtype).at[flat].add(norms)[:bins]  # + the masked entries' slot
    if reduction == "mean":
        plain = plain / jnp.maximum(n_valid, 1).astype(dtype)
    r = counts[:bins]
    density = r.astype(dtype) if momentum == 0.0 else new_ema.astype(dtype)
    nan = jnp.asarray(jnp.nan, dtype)

    def unless_poisoned(x):
        return jnp.where(ok, x, nan)

    if positive is None:
        fraction = nan
    else:
        positives = jnp.sum(positive & (ind < bins))
        fraction = unless_poisoned(positives.astype(dtype) / jnp.maximum(n_valid, 1).astype(dtype))
    counted = jnp.where(ok, r, jnp.zeros_like(r))
    return Diagnostics(
        counts=counted,
        valid=jnp.sum(counted),
        nonempty=jnp.sum(counted > 0).astype(counted.dtype),
        density=unless_poisoned(density),
        beta=beta[:bins],
        grad_mass=unless_poisoned(plain * beta[:bins] * abs(loss_weight)),
        plain_mass=unless_poisoned(plain),
        positive_fraction=fraction,
    )


def collector(positive=None):
    """``harmonized_loss``'s ``diagnose`` argument: ``positive`` (GHM-C: t == 1 per entry) or None."""
    return functools.partial(collect, positive=positive)
