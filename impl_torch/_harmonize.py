"""The harmonizing weight beta, vectorised: one scatter-add histogram with exact int64 counts,
a fixed number of regions, no host sync (spec.md sections 2.3 and 4)."""

from __future__ import annotations

import torch


def region_index(g: torch.Tensor, valid: torch.Tensor, bins: int) -> torch.Tensor:
    """ind(g) = min(floor(g * M), M - 1) for valid entries; masked entries go to a spare
    region ``bins`` that is never read. NaN g (only where the batch is poisoned) maps to 0."""
    ind = torch.floor(torch.nan_to_num(g, nan=0.0).clamp(0.0, 1.0) * bins).long().clamp_(max=bins - 1)
    return torch.where(valid, ind, bins)


def region_counts(ind: torch.Tensor, bins: int) -> torch.Tensor:
    """R_j as exact int64 counts (length bins + 1: the last slot collects masked entries)."""
    flat = ind.reshape(-1)
    return torch.zeros(bins + 1, dtype=torch.int64, device=ind.device).scatter_add_(0, flat, torch.ones_like(flat))


def harmonize(g: torch.Tensor, valid: torch.Tensor, ok: torch.Tensor, *, bins: int, momentum: float,
              dialect: str, state: torch.Tensor | None = None, initialized: torch.Tensor | None = None):
    """Return (beta, new_state, new_initialized, n_valid): beta per entry (0 where masked, NaN on
    valid entries when ``ok`` is False). ``state``/``initialized`` are the EMA buffers, needed
    only when momentum > 0; the returned ones equal them unless the call has a valid entry and
    ``ok``. Without momentum they are returned as given."""
    dtype = g.dtype
    ind = region_index(g, valid, bins)
    r = region_counts(ind, bins)[:bins]
    n_valid = r.sum()
    rf = r.to(dtype)
    if momentum == 0.0:
        s = rf
    elif dialect == "paper":  # Eq. (12) on every region; S^(0) := R^(1)
        s = torch.where(initialized, momentum * state.to(dtype) + (1.0 - momentum) * rf, rf)
    else:  # accumulator from zeros, updated only where R_j > 0
        s = torch.where(r > 0, momentum * state.to(dtype) + (1.0 - momentum) * rf, state.to(dtype))
    n_regions = bins if dialect == "paper" else (r > 0).sum().clamp(min=1).to(dtype)
    denom = torch.cat([s * n_regions, s.new_ones(1)])  # the spare region: never 0
    beta = torch.where(valid, n_valid.to(dtype) / denom[ind], 0.0)
    beta = torch.where(valid & ~ok, torch.nan, beta)
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    update = ok & (n_valid > 0)
    new_state = torch.where(update, s.to(state.dtype), state)
    return beta, new_state, initialized | update, n_valid


def ghm_reduce(per_entry_loss: torch.Tensor, g: torch.Tensor, valid: torch.Tensor, ok: torch.Tensor, *,
               bins: int, momentum: float, dialect: str, reduction: str, loss_weight: float,
               state: torch.Tensor | None = None, initialized: torch.Tensor | None = None):
    """loss_weight * reduction(beta * L), beta a constant for backprop (computed under no_grad).

    ``per_entry_loss`` must be finite on masked entries (the callers zero their inputs), so
    ``beta = 0`` masks them. Returns (loss, new_state, new_initialized)."""
    with torch.no_grad():
        beta, new_state, new_initialized, n_valid = harmonize(
            g, valid, ok, bins=bins, momentum=momentum, dialect=dialect, state=state, initialized=initialized)
    per_entry = beta * per_entry_loss * loss_weight
    if reduction == "none":
        loss = per_entry
    elif reduction == "sum":
        loss = per_entry.sum()
    else:
        loss = per_entry.sum() / n_valid.clamp(min=1).to(per_entry.dtype)
    return loss, new_state, new_initialized
