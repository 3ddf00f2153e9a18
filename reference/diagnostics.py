"""What one call of the loss did (spec.md section 13), in float64: the histogram, the density
and beta per region, and where the gradient went. ``ghm_c(...).diagnostics`` holds one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def shares(mass: np.ndarray) -> np.ndarray:
    """mass_j / sum_k mass_k: each region's part of the gradient (0 everywhere when the sum is 0;
    NaN for a poisoned call)."""
    mass = np.asarray(mass, dtype=np.float64)
    total = mass.sum()
    return mass / total if total != 0 else np.zeros_like(mass)


@dataclass(frozen=True)
class Diagnostics:
    """spec.md section 13, with M = bins and c = 1/N ("mean") or 1 ("sum", "none"):

    counts: R_j, int64 (M,). valid: N. nonempty: #{j : R_j > 0}.
    density: the S_j the weights were formed from (R_j, or the EMA / accumulator after the call).
    beta: beta_j of region j, 0 where R_j = 0.
    grad_mass: sum over the region's valid entries of |d loss / d pred_i| (the loss's own gradient).
    plain_mass: c * sum |dL_i / dpred_i|, the unharmonized CE / ASL1 gradient mass.
    positive_fraction: GHM-C, the share of valid entries whose target is 1; GHM-R, NaN.
    A call with no valid entry reports 0s (density: the state as it stands); a poisoned call
    0 in every integer field and NaN in every float field."""

    counts: np.ndarray
    valid: int
    nonempty: int
    density: np.ndarray
    beta: np.ndarray
    grad_mass: np.ndarray
    plain_mass: np.ndarray
    positive_fraction: float

    @property
    def grad_share(self) -> np.ndarray:
        """Each region's share of the harmonized gradient's L1 mass (Figure 1, right)."""
        return shares(self.grad_mass)

    @property
    def plain_share(self) -> np.ndarray:
        """Each region's share of the plain CE / ASL1 gradient's L1 mass."""
        return shares(self.plain_mass)


def poisoned(bins: int) -> Diagnostics:
    """A call with a valid NaN/Inf: the histogram is undefined."""
    nan = np.full(bins, np.nan)
    return Diagnostics(np.zeros(bins, np.int64), 0, 0, nan, nan.copy(), nan.copy(), nan.copy(), float("nan"))


def empty(bins: int, state: np.ndarray | None, *, classification: bool) -> Diagnostics:
    """A call with no valid entry: nothing counted, the state (if any) as it stands."""
    z = np.zeros(bins)
    density = z.copy() if state is None else np.asarray(state, dtype=np.float64).copy()
    return Diagnostics(
        np.zeros(bins, np.int64), 0, 0, density, z.copy(), z.copy(), z.copy(), 0.0 if classification else float("nan")
    )


def diagnose(
    ind: np.ndarray,
    *,
    bins: int,
    density: np.ndarray,
    beta_region: np.ndarray,
    grad: np.ndarray,
    per_entry_grad: np.ndarray,
    positive: np.ndarray | None,
    reduction: str,
) -> Diagnostics:
    """The diagnostics of a call with at least one valid entry and no poison.

    ind: the region of each valid entry. grad: d loss / d pred of each valid entry (the reference's
    gradient, beta, lambda and 1/N included). per_entry_grad: dL_i/dpred_i of each valid entry.
    positive: whether each valid entry's target is 1 (GHM-C), or None (GHM-R)."""
    counts = np.bincount(ind, minlength=bins).astype(np.int64)
    n = int(counts.sum())
    c = 1.0 / n if reduction == "mean" else 1.0
    grad_mass = np.bincount(ind, weights=np.abs(grad), minlength=bins)
    plain_mass = np.bincount(ind, weights=np.abs(per_entry_grad), minlength=bins) * c
    fraction = float("nan") if positive is None else float(np.count_nonzero(positive)) / n
    return Diagnostics(
        counts,
        n,
        int(np.count_nonzero(counts)),
        np.asarray(density, dtype=np.float64).copy(),
        beta_region,
        grad_mass,
        plain_mass,
        fraction,
    )
