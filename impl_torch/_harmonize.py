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
              dialect: str, state: torch.Tensor, initialized: torch.Tensor):
    """Return (beta, new_state, new_initialized, n_valid): beta per entry (0 where masked, NaN on
    valid entries when ``ok`` is False). ``state``/``initialized`` are the EMA buffers; the
    returned ones equal them unless the call has a valid entry and ``ok``."""
    dtype = g.dtype
    ind = region_index(g, valid, bins)
    counts = region_counts(ind, bins)
    r = counts[:bins]
    n_valid = r.sum()
    update = ok & (n_valid > 0)
    s_prev = state.to(dtype)
    if dialect == "paper":
        if momentum == 0.0:
            s = r.to(dtype)
        else:  # Eq. (12) on every region; S^(0) := R^(1)
            s = torch.where(initialized, momentum * s_prev + (1.0 - momentum) * r.to(dtype), r.to(dtype))
        denom = s * bins
    else:
        if momentum == 0.0:
            s = r.to(dtype)
        else:  # accumulator from zeros, updated only where R_j > 0
            s = torch.where(r > 0, momentum * s_prev + (1.0 - momentum) * r.to(dtype), s_prev)
        denom = s * (r > 0).sum().clamp(min=1).to(dtype)
    denom = torch.cat([denom, denom.new_ones(1)])  # the spare region: never 0
    beta = torch.where(valid, n_valid.to(dtype) / denom[ind], 0.0)
    beta = torch.where(valid & ~ok, torch.nan, beta)
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    new_state = torch.where(update, s, s_prev).to(state.dtype)
    return beta, new_state, initialized | update, n_valid


def reduce(per_entry: torch.Tensor, n_valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_entry
    total = per_entry.sum()
    if reduction == "sum":
        return total
    return total / n_valid.clamp(min=1).to(total.dtype)


def ghm_reduce(per_entry_loss: torch.Tensor, g: torch.Tensor, valid: torch.Tensor, ok: torch.Tensor, *,
               bins: int, momentum: float, dialect: str, reduction: str, loss_weight: float,
               state: torch.Tensor, initialized: torch.Tensor):
    """loss_weight * reduce(beta * L) with beta detached; returns (loss, new_state, new_initialized)."""
    with torch.no_grad():
        beta, new_state, new_initialized, n_valid = harmonize(
            g.detach(), valid, ok, bins=bins, momentum=momentum, dialect=dialect, state=state, initialized=initialized)
    per_entry = torch.where(valid, beta * per_entry_loss, 0.0) * loss_weight
    return reduce(per_entry, n_valid, reduction), new_state, new_initialized


def ghm_stateless(per_entry_loss, g, valid, ok, *, bins: int, dialect: str, reduction: str, loss_weight: float):
    """``ghm_reduce`` without momentum, for the functional forms."""
    state = per_entry_loss.new_zeros(bins)
    initialized = torch.zeros((), dtype=torch.bool, device=per_entry_loss.device)
    loss, _, _ = ghm_reduce(per_entry_loss, g, valid, ok, bins=bins, momentum=0.0, dialect=dialect,
                            reduction=reduction, loss_weight=loss_weight, state=state, initialized=initialized)
    return loss
