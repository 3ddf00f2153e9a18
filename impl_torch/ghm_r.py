"""GHM-R: the gradient harmonized Authentic Smooth L1 (spec.md section 3)."""

from __future__ import annotations

import torch

from ._checks import anchor_mask, check_hyper, check_mu, check_shape, check_tensor, compute_dtype
from ._harmonize import ghm_reduce
from ._module import GHMLossBase


def _prepare(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None, mu: float):
    """Per-entry ASL1 (Eq. 17), gradient norm gr (Eq. 18), the valid mask and the ok flag."""
    check_tensor("pred", pred, kinds="f")
    check_tensor("target", target, kinds="f")
    check_shape("target", target, pred.shape)
    dtype = compute_dtype(pred)
    d = pred.to(dtype) - target.to(dtype)
    if label_weight is None:
        valid = torch.ones_like(d, dtype=torch.bool)
    else:
        valid = anchor_mask(label_weight, pred)
    entry_ok = torch.isfinite(d)
    ok = (entry_ok | ~valid).all()
    d_safe = torch.where(valid, d, 0.0)  # masked entries: no NaN can reach their gradient
    root = torch.sqrt(d_safe * d_safe + mu * mu)
    per_entry = d_safe * d_safe / (root + mu)  # = root - mu, without its cancellation for |d| << mu
    g = d_safe.detach().abs() / root.detach()
    return per_entry, g, valid, ok


class GHMRLoss(GHMLossBase):
    """GHM-R loss (Li et al., AAAI 2019, Eqs. 17-19): Authentic Smooth L1
    ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` of ``d = pred - target``, reweighted by the inverse
    density of ``gr = |d| / sqrt(d^2 + mu^2)``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * ASL1(d_i)`` (reduction "mean").
    Dialects, masking, NaN handling, dtypes and the EMA buffers (updated in training mode only)
    are as in :class:`GHMCLoss` (spec.md sections 4-8).

    Args:
        mu: the ASL1 parameter, > 0. Default: 0.02.
        bins: number of unit regions M. Default: 10.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        loss_weight: multiplier of the loss (the released configs use 10). Default: 1.0.

    Call: ``loss(pred, target, label_weight=None)``: ``pred`` and ``target`` of one shape (e.g. (N, 4));
    ``label_weight`` of that shape or per anchor, ``pred.shape[:-1]``. Default: all valid.
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0, dialect: str = "paper",
                 reduction: str = "mean", loss_weight: float = 1.0) -> None:
        check_mu(mu)
        super().__init__(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
        self.mu = float(mu)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None = None) -> torch.Tensor:
        return self._harmonized(*_prepare(pred, target, label_weight, self.mu))

    def extra_repr(self) -> str:
        return f"mu={self.mu}, " + super().extra_repr()


def ghm_r_loss(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None = None, *,
               mu: float = 0.02, bins: int = 10, dialect: str = "paper", reduction: str = "mean",
               loss_weight: float = 1.0) -> torch.Tensor:
    """Stateless GHM-R (no momentum); same semantics and arguments as :class:`GHMRLoss`."""
    check_mu(mu)
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    per_entry, g, valid, ok = _prepare(pred, target, label_weight, mu)
    loss, _, _ = ghm_reduce(per_entry, g, valid, ok, bins=bins, momentum=0.0, dialect=dialect,
                            reduction=reduction, loss_weight=loss_weight)
    return loss
