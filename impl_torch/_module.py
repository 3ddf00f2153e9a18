"""What GHMCLoss and GHMRLoss share: hyper-parameters and the EMA buffers."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_hyper
from ._harmonize import ghm_reduce


class GHMLossBase(nn.Module):
    def __init__(self, *, bins: int, momentum: float, dialect: str, reduction: str, loss_weight: float) -> None:
        super().__init__()
        check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
        self.bins, self.momentum, self.dialect = int(bins), float(momentum), dialect
        self.reduction, self.loss_weight = reduction, float(loss_weight)
        # The EMA region state (S of Eq. 12, or the mmdet accumulator). Buffers, not parameters:
        # saved in state_dict, moved by .to(). Unused when momentum == 0.
        self.register_buffer("ema", torch.zeros(self.bins, dtype=torch.float32))
        self.register_buffer("ema_initialized", torch.zeros((), dtype=torch.bool))

    def _harmonized(self, per_entry_loss, g, valid, ok) -> torch.Tensor:
        loss, new_state, new_initialized = ghm_reduce(
            per_entry_loss, g, valid, ok, bins=self.bins, momentum=self.momentum, dialect=self.dialect,
            reduction=self.reduction, loss_weight=self.loss_weight, state=self.ema, initialized=self.ema_initialized)
        if self.momentum > 0.0 and self.training:
            with torch.no_grad():
                self.ema.copy_(new_state)
                self.ema_initialized.copy_(new_initialized)
        return loss

    def extra_repr(self) -> str:
        return (f"bins={self.bins}, momentum={self.momentum}, dialect={self.dialect!r}, "
                f"reduction={self.reduction!r}, loss_weight={self.loss_weight}")
