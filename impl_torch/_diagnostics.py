"""What one call of the loss did (spec.md section 13), on the device, without a host sync.

Computed inside ``harmonized_loss`` (its ``diagnose`` hook) from what the loss has already
formed: the region index of every entry, the counts, beta per region and the EMA state. The one
extra pass is a histogram of |dL_i/dpred_i| (g for GHM-C, gr for GHM-R) weighted by entry,
which gives both gradient masses: beta is constant per region, so
grad_mass_j = |loss_weight| * beta_j * c * sum_{i in r_j} |dL_i/dpred_i| (c = 1/N for "mean").
With diagnostics off none of this runs.

    loss = GHMCLoss(bins=30, momentum=0.75, diagnostics=True)
    loss(pred, target, weight).backward()
    d = loss.last_diagnostics()            # a Diagnostics of tensor copies, on the loss's device
    d.nonempty, d.grad_share, d.counts
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from ._checks import same_shape


def shares(mass: torch.Tensor) -> torch.Tensor:
    """mass_j / sum_k mass_k (0 everywhere when the sum is 0; NaN for a poisoned call)."""
    total = mass.sum(-1, keepdim=True)
    nonzero = total != 0  # NaN != 0: a poisoned call stays NaN
    return torch.where(nonzero, mass / torch.where(nonzero, total, torch.ones_like(total)), torch.zeros_like(mass))


class Diagnostics(NamedTuple):
    """What one call did (spec.md 13), with M = bins and c = 1/N ("mean") or 1 ("sum", "none").

    counts: R_j, int64 (M,). valid: N, int64. nonempty: #{j : R_j > 0}, int64.
    density: the S_j the weights were formed from (R_j without momentum; the EMA / mmdet
        accumulator after the call's update with it).
    beta: beta_j, the weight of region j in this call, 0 for an empty region.
    grad_mass: sum over region j's valid entries of |d loss / d pred_i|.
    plain_mass: c * sum |dL_i / dpred_i|: the same for plain CE (GHM-C) or ASL1 (GHM-R).
    positive_fraction: GHM-C, the share of valid entries whose target is 1; GHM-R, NaN.
    A call with no valid entry: 0s (density: the state as it stands). A poisoned call (a valid
    NaN/Inf or out-of-range entry): integer fields 0, float fields NaN.
    ``grad_share`` / ``plain_share``: the masses over their sums (Figure 1, right panel)."""

    counts: torch.Tensor
    valid: torch.Tensor
    nonempty: torch.Tensor
    density: torch.Tensor
    beta: torch.Tensor
    grad_mass: torch.Tensor
    plain_mass: torch.Tensor
    positive_fraction: torch.Tensor

    @property
    def grad_share(self) -> torch.Tensor:
        """Each region's share of the harmonized gradient's L1 mass."""
        return shares(self.grad_mass)

    @property
    def plain_share(self) -> torch.Tensor:
        """Each region's share of the plain CE / ASL1 gradient's L1 mass."""
        return shares(self.plain_mass)


FIELDS = Diagnostics._fields
_INTEGER = ("counts", "valid", "nonempty")
FLOAT_BUFFERS = tuple(f"diagnostics_{f}" for f in FIELDS if f not in _INTEGER)  # kept float32 (see _module)


def _positive_entries(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """Whether each entry's target is 1 (GHM-C): for class indices, the entry of each anchor's label."""
    if kind != "c":
        return None
    if same_shape(target.shape, pred.shape):
        return target == 1
    labels = target.to(torch.int64)
    return labels.unsqueeze(-1) == torch.arange(pred.shape[-1], device=labels.device)


def collect(
    *,
    kind: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    ind: torch.Tensor,
    per_entry_grad: torch.Tensor,
    counts: torch.Tensor,
    local_counts: torch.Tensor,
    ok: torch.Tensor,
    beta: torch.Tensor,
    new_state,
    n_valid: torch.Tensor,
    bins: int,
    momentum: float,
    reduction: str,
    loss_weight,
) -> Diagnostics:
    """The hook ``harmonized_loss`` calls with its internals, before the gradient overwrites
    ``per_entry_grad``: ``ind`` (masked entries in slot ``bins``; compiled, poisoned ones in
    ``bins + 1``), ``counts`` / ``beta`` (global under sync_density), ``local_counts`` (this
    worker's), ``new_state`` (the EMA after the call, or None)."""
    dtype = beta.dtype
    flat = ind.reshape(-1)
    norms = per_entry_grad.reshape(-1).abs()  # |dL_i/dx_i|: g (GHM-C) or gr (GHM-R)
    plain = torch.zeros(bins + 2, dtype=dtype, device=flat.device).index_add_(0, flat, norms)[:bins]
    if reduction == "mean":
        plain = plain / n_valid.clamp(min=1).to(dtype)
    r = counts[:bins]
    density = r.to(dtype) if momentum == 0.0 else new_state.to(dtype)
    nan = torch.full((), torch.nan, dtype=dtype, device=flat.device)

    def unless_poisoned(x: torch.Tensor) -> torch.Tensor:
        return torch.where(ok, x, nan)

    positive = _positive_entries(kind, pred, target)
    if positive is None:
        fraction = nan
    else:
        positives = (positive & (ind < bins)).sum()
        fraction = unless_poisoned(positives.to(dtype) / local_counts[:bins].sum().clamp(min=1).to(dtype))
    counted = torch.where(ok, r, torch.zeros_like(r))
    return Diagnostics(
        counts=counted,
        valid=counted.sum(),
        nonempty=(counted > 0).sum(),
        density=unless_poisoned(density),
        beta=beta[:bins],
        grad_mass=unless_poisoned(plain * beta[:bins] * abs(loss_weight)),
        plain_mass=unless_poisoned(plain),
        positive_fraction=fraction,
    )


def collector(kind: str, pred: torch.Tensor, target: torch.Tensor):
    """``harmonized_loss``'s ``diagnose`` argument for a GHM-C ("c") or GHM-R ("r") call."""
    return functools.partial(collect, kind=kind, pred=pred, target=target)


# ---------------------------------------------------------------- the modules' buffers


def register_buffers(module: torch.nn.Module, bins: int) -> None:
    """Non-persistent buffers (moved by ``.to(device)``, not in ``state_dict``), zeros until the
    first call; each call overwrites them in place."""
    for field in FIELDS:
        shape = (bins,) if field in ("counts", "density", "beta", "grad_mass", "plain_mass") else ()
        dtype = torch.int64 if field in _INTEGER else torch.float32
        module.register_buffer(f"diagnostics_{field}", torch.zeros(shape, dtype=dtype), persistent=False)


def store(module: torch.nn.Module, diagnostics: Diagnostics) -> None:
    with torch.no_grad():
        for field, value in zip(FIELDS, diagnostics):
            getattr(module, f"diagnostics_{field}").copy_(value)


def read(module: torch.nn.Module) -> Diagnostics:
    if not getattr(module, "diagnostics", False):
        raise RuntimeError(
            f"{type(module).__name__} was built without diagnostics: construct it with "
            f"diagnostics=True to record what each call did"
        )
    return Diagnostics(*(getattr(module, f"diagnostics_{field}").clone() for field in FIELDS))
