"""GHM-C: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import anchor_mask, check_hyper, check_shape, check_tensor, compute_dtype
from ._harmonize import ghm_reduce
from ._module import GHMLossBase


def _prepare(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None):
    """Per-entry CE (Eq. 1), gradient norm g (Eq. 3), the valid mask and the batch's ok flag."""
    check_tensor("pred", pred, kinds="f")
    check_tensor("target", target, kinds="fbi")
    dtype = compute_dtype(pred)
    x = pred.to(dtype)
    classes = target.dtype not in (torch.bool,) and not target.is_floating_point()
    if classes:  # integer class indices; label C = background (all-zero row)
        if pred.dim() == 0:
            raise ValueError("integer (class index) target needs pred of shape (..., C)")
        check_shape("integer (class index) target", target, pred.shape[:-1])
        n_classes = pred.shape[-1]
        t = (target.unsqueeze(-1) == torch.arange(n_classes, device=target.device)).to(dtype)
        entry_ok = ((target >= 0) & (target <= n_classes)).unsqueeze(-1)
    else:
        check_shape("target", target, pred.shape)
        t = target.to(dtype)
        entry_ok = (t >= 0) & (t <= 1)
    if label_weight is None:
        valid = torch.ones_like(x, dtype=torch.bool)
    else:
        valid = anchor_mask(label_weight, pred)
    entry_ok = entry_ok & torch.isfinite(x) & torch.isfinite(t)
    ok = (entry_ok | ~valid).all()
    # Masked entries are zeroed so that nothing (not even a NaN) reaches their gradient; valid
    # non-finite entries stay as they are and make the loss and every valid gradient NaN.
    x_safe = torch.where(valid, x, 0.0)
    t_safe = torch.where(valid, t, 0.0)
    per_entry = F.binary_cross_entropy_with_logits(x_safe, t_safe, reduction="none")
    g = (torch.sigmoid(x_safe.detach()) - t_safe).abs()
    return per_entry, g, valid, ok


class GHMCLoss(GHMLossBase):
    """GHM-C loss (Li et al., AAAI 2019, Eqs. 1-13): sigmoid cross entropy reweighted by the
    inverse density of the gradient norm ``g = |sigmoid(pred) - target|``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * CE(pred_i, target_i)`` (reduction "mean").

    Dialects (spec.md section 4):

    - ``"paper"``: ``beta_i = N / (S_ind(i) * bins)``, S = the region counts R, or with momentum
      their EMA (Eq. 12) over every region, starting from the first call's counts.
    - ``"mmdet"``: the official code: ``beta_i = N / (A_ind(i) * n)`` with n the number of
      non-empty regions; with momentum the accumulator A starts at zero and is updated only
      for non-empty regions.

    beta is a constant for backprop. Entries with ``label_weight <= 0`` (or NaN) are masked:
    not counted in N nor in the histogram, gradient 0; positive weights act only as a mask.
    A NaN/Inf in a valid entry, a valid target outside [0, 1] or a valid class index outside
    [0, C] gives a NaN loss and leaves the EMA buffer untouched (checking would need a host
    sync). No valid entry gives 0. Statistics are computed in float32 (float64 for float64
    ``pred``); the loss is returned in that dtype.

    EMA state: the buffers ``ema`` and ``ema_initialized`` (in ``state_dict``, moved by
    ``.to``). They update on each call in training mode only; in ``eval()`` mode the loss is
    computed as a training call would compute it, but the buffers are left unchanged.

    Args:
        bins: number of unit regions M. Default: 30.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"`` (1/N), ``"sum"`` or ``"none"`` (per entry beta * CE). Default: ``"mean"``.
        loss_weight: multiplier of the loss. Default: 1.0.

    Call: ``loss(pred, target, label_weight=None)``; ``pred`` are logits of any shape (e.g. (N, C));
    ``target`` a float tensor like ``pred`` (binary or soft, in [0, 1]) or an integer tensor of
    class indices of shape ``pred.shape[:-1]`` (index C = background); ``label_weight`` like
    ``pred``, or like ``pred.shape[:-1]`` (per anchor, broadcast). Default: all valid.
    """

    def __init__(self, bins: int = 30, momentum: float = 0.0, dialect: str = "paper", reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        super().__init__(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None = None) -> torch.Tensor:
        return self._harmonized(*_prepare(pred, target, label_weight))


def ghm_c_loss(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None = None, *, bins: int = 30,
               dialect: str = "paper", reduction: str = "mean", loss_weight: float = 1.0) -> torch.Tensor:
    """Stateless GHM-C (no momentum); same semantics and arguments as :class:`GHMCLoss`."""
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    per_entry, g, valid, ok = _prepare(pred, target, label_weight)
    loss, _, _ = ghm_reduce(per_entry, g, valid, ok, bins=bins, momentum=0.0, dialect=dialect,
                            reduction=reduction, loss_weight=loss_weight)
    return loss
