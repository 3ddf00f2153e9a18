"""What GHMCLoss and GHMRLoss share: hyper-parameters and the EMA buffers."""

from __future__ import annotations

import torch
from torch import nn

from . import _diagnostics
from ._checks import check_hyper
from ._harmonize import FusedForward, harmonized_loss, native_loss

STATE_DTYPE = torch.float32  # spec.md section 8: the EMA state is float32 whatever the module is cast to
_FLOAT32_BUFFERS = ("ema",) + _diagnostics.FLOAT_BUFFERS


class GHMLossBase(nn.Module):
    kind = "c"  # "c" (GHM-C) or "r" (GHM-R)
    ema: torch.Tensor  # buffers (register_buffer in __init__)
    ema_initialized: torch.Tensor

    def __init__(
        self,
        *,
        bins: int,
        momentum: float,
        dialect: str,
        reduction: str,
        loss_weight: float,
        sync_density: bool = False,
        process_group=None,
        diagnostics: bool = False,
    ) -> None:
        super().__init__()
        check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
        self.bins, self.momentum, self.dialect = int(bins), float(momentum), dialect
        self.reduction, self.loss_weight = reduction, float(loss_weight)
        self.sync_density, self.process_group = bool(sync_density), process_group
        # The EMA region state (S of Eq. 12, or the mmdet accumulator). Buffers, not parameters:
        # saved in state_dict, moved by .to(). Unused when momentum == 0.
        self.register_buffer("ema", torch.zeros(self.bins, dtype=STATE_DTYPE))
        self.register_buffer("ema_initialized", torch.zeros((), dtype=torch.bool))
        # What the last call did (spec.md 13), when asked for: non-persistent buffers, written in place.
        self.diagnostics = bool(diagnostics)
        if self.diagnostics:
            _diagnostics.register_buffers(self, self.bins)

    def _apply(self, fn, recurse=True):
        """Let ``.to(device)`` move the EMA buffer, but not ``.half()`` / ``.bfloat16()`` /
        ``.double()`` / ``.to(dtype)`` change its dtype: in float16 a region count above 65504
        is inf, and every later loss and gradient would be silently 0. (Likewise the float
        diagnostics: a density is a count.)"""
        kept = {name: self._buffers[name] for name in _FLOAT32_BUFFERS if name in self._buffers}
        out = super()._apply(fn, recurse)
        for name, before in kept.items():
            if self._buffers[name].dtype != STATE_DTYPE:
                self._buffers[name] = before.to(device=self._buffers[name].device, dtype=STATE_DTYPE)
        return out

    def _reduction(self, reduction_override: str | None) -> str:
        """mmdetection's ``reduction_override`` (None: the loss's own reduction)."""
        if reduction_override is None:
            return self.reduction
        check_hyper(
            bins=self.bins,
            momentum=self.momentum,
            dialect=self.dialect,
            reduction=reduction_override,
            loss_weight=self.loss_weight,
        )
        return reduction_override

    def _harmonized(
        self,
        pred,
        per_entry_loss,
        per_entry_grad,
        ind,
        ok,
        scratch=None,
        *,
        reduction: str | None = None,
        target=None,
        per_entry_target_grad=None,
    ) -> torch.Tensor:
        out = harmonized_loss(
            pred,
            per_entry_loss,
            per_entry_grad,
            ind,
            ok,
            bins=self.bins,
            momentum=self.momentum,
            dialect=self.dialect,
            reduction=reduction or self.reduction,
            loss_weight=self.loss_weight,
            state=self.ema,
            initialized=self.ema_initialized,
            scratch=scratch,
            sync_density=self.sync_density,
            process_group=self.process_group,
            target=target,
            per_entry_target_grad=per_entry_target_grad,
            diagnose=_diagnostics.collector(self.kind, pred, target) if self.diagnostics else None,
        )
        loss, new_state, new_initialized = out[:3]
        if self.diagnostics:  # every call, in eval() mode too: what the call did
            _diagnostics.store(self, out[3])
        self._keep_state(new_state, new_initialized)
        return loss

    def last_diagnostics(self) -> _diagnostics.Diagnostics:
        """What the last call did (spec.md 13): counts, N, non-empty regions, density, beta and
        gradient masses per region, positive fraction; ``.grad_share`` / ``.plain_share`` derived.
        Copies of the buffers (on the loss's device; reading them is the caller's only sync).
        Needs ``diagnostics=True``; zeros before the first call."""
        return _diagnostics.read(self)

    def _native(self, pred, fused: FusedForward, *, mu: float = 0.0, reduction: str, target=None) -> torch.Tensor:
        """``_harmonized`` for the fused kernels' forward (``_native``)."""
        loss, new_state, new_initialized = native_loss(
            pred,
            fused,
            kind=self.kind,
            mu=mu,
            bins=self.bins,
            momentum=self.momentum,
            dialect=self.dialect,
            reduction=reduction,
            loss_weight=self.loss_weight,
            state=self.ema,
            initialized=self.ema_initialized,
            sync_density=self.sync_density,
            process_group=self.process_group,
            target=target,
        )
        self._keep_state(new_state, new_initialized)
        return loss

    def _keep_state(self, new_state, new_initialized) -> None:
        """The EMA moves only in training with momentum (eval() calls read it, never write it)."""
        if self.momentum > 0.0 and self.training:
            with torch.no_grad():
                self.ema.copy_(new_state)
                self.ema_initialized.copy_(new_initialized)

    def extra_repr(self) -> str:
        return (
            f"bins={self.bins}, momentum={self.momentum}, dialect={self.dialect!r}, "
            f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
            + (", sync_density=True" if self.sync_density else "")
            + (", diagnostics=True" if self.diagnostics else "")
        )
