"""GHM-R: the gradient harmonized Authentic Smooth L1 (spec.md section 3)."""

from __future__ import annotations

import torch

from . import _diagnostics
from ._checks import (
    FLOATING,
    check_hyper,
    check_label_weight,
    check_mu,
    check_shape,
    check_tensor,
    compute_dtype,
    valid_mask,
)
from ._harmonize import FusedForward, harmonized_loss, native_loss, poison_in_counts, region_index
from ._module import GHMLossBase
from ._native import native_forward, serves, weight_kind


def _asl1_terms(d: torch.Tensor, mu) -> tuple[torch.Tensor, torch.Tensor]:
    """(ASL1(d), dASL1/dd) without squaring d or mu (spec.md 3): rho = hypot(d, mu),
    u = d / rho (Eq. 18) and ASL1 = d u / (1 + mu / rho) (Eq. 17, no cancellation)."""
    # mu as a tensor made by a multiply: under torch.compile(dynamic=True) mu is a SymFloat, and
    # torch 2.13 miscompiles torch.full((), mu) next to a scalar mu / rho (a wrong loss once mu
    # changes between calls; tested).
    mu_t = torch.ones((), dtype=d.dtype, device=d.device) * mu
    if torch.compiler.is_compiling():
        # Inductor's vectorised hypot costs 5x a sqrt. The scaled form, with s = max(|d|, mu):
        # r = sqrt((d/s)^2 + (mu/s)^2) in [1, sqrt 2], rho = s r, u = (d/s) / r, as impl_tf does.
        s = torch.maximum(d.abs(), mu_t)
        d_s, mu_s = d / s, mu_t / s
        r = torch.sqrt(d_s * d_s + mu_s * mu_s)
        u = d_s / r
        return d * u / (1.0 + mu_s / r), u
    rho = torch.hypot(d, mu_t)
    u = d / rho
    return (d * u).div_(rho.reciprocal_().mul_(mu_t).add_(1.0)), u  # in place: two buffers fewer


def asl1(d: torch.Tensor, mu) -> torch.Tensor:
    """Eq. (17): ASL1(d) = sqrt(d^2 + mu^2) - mu, finite for every finite d."""
    return _asl1_terms(d, mu)[0]


def asl1_grad(d: torch.Tensor, mu) -> torch.Tensor:
    """Eq. (18): dASL1/dd = d / sqrt(d^2 + mu^2)."""
    return _asl1_terms(d, mu)[1]


def _prepare(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None, mu, bins: int):
    """ASL1(d_i) (Eq. 17), its gradient (Eq. 18), the region index of gr_i = |dASL1/dd| with
    masked entries in the spare region, and the ok flag (every valid residual finite)."""
    check_tensor("pred", pred, allowed=(FLOATING,))
    check_tensor("target", target, allowed=(FLOATING,))
    check_shape("target", target, pred.shape)
    valid = valid_mask(label_weight, pred)
    dtype = compute_dtype(pred)
    with torch.no_grad():
        d = pred.detach().to(dtype) - target.to(dtype)
        if valid is not None:
            d = torch.where(valid, d, 0.0)  # masked: loss 0, gradient 0, gr = 0; no NaN gets through
        bad = None
        ok = torch.ones((), dtype=torch.bool, device=d.device)
        if poison_in_counts():  # compiled: a per-entry check, fused, counted in the poison slot
            bad = ~torch.isfinite(d)
        elif d.numel():
            lo, hi = torch.aminmax(d)
            ok = torch.isfinite(lo) & torch.isfinite(hi)
        per_entry_loss, per_entry_grad = _asl1_terms(d, mu)
        ind = region_index(per_entry_grad.abs(), bins, valid, bad)
        # d ASL1(x - t) / dt = -d ASL1 / dd (spec.md 5), only for a target that is itself trained
        per_entry_target_grad = -per_entry_grad if target.requires_grad else None
    return per_entry_loss, per_entry_grad, ind, ok, per_entry_target_grad


def _serves(pred: torch.Tensor, mu, bins: int, diagnostics: bool) -> bool:
    """The fused kernels take a concrete mu only (under torch.compile(dynamic=True) it may be symbolic)."""
    return isinstance(mu, float) and serves(pred, bins, diagnostics=diagnostics)


def _prepare_native(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None, mu: float, bins: int):
    """``_prepare`` for the fused kernels (``_native``): the same checks, then one pass computing
    the region indices, the counts and the per-region ASL1 sums. Returns the kernels' ``FusedForward``."""
    check_tensor("target", target, allowed=(FLOATING,))
    check_shape("target", target, pred.shape)
    check_label_weight(label_weight, pred)
    with torch.no_grad():
        x, t = pred.detach(), target.detach().to(torch.float32).contiguous()
        lw, lw_kind = weight_kind(label_weight, pred)
        ind, counts, sums = native_forward(x, t, lw, lw_kind, bins, "r", False, mu)
    return FusedForward(x, t, ind, counts, sums)


class GHMRLoss(GHMLossBase):
    """GHM-R loss (Li et al., AAAI 2019, Eqs. 17-19): Authentic Smooth L1
    ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` of ``d = pred - target``, reweighted by the inverse
    density of ``gr = |d| / sqrt(d^2 + mu^2)``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * ASL1(d_i)`` (reduction "mean"), with
    ``d loss / d pred_i = loss_weight * beta_i * d_i / sqrt(d_i^2 + mu^2) / N`` (and its negative for
    a ``target`` that requires grad; differentiable once, as :class:`GHMCLoss`). ASL1 and gr are
    evaluated without overflow for every finite residual. Dialects, masking, NaN handling, dtypes
    and the EMA buffers (float32, updated in training mode only) are as in :class:`GHMCLoss`
    (spec.md sections 4-8).

    Args:
        mu: the ASL1 parameter, in [1e-30, 1e30]. Default: 0.02.
        bins: number of unit regions M. Default: 10.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        loss_weight: multiplier of the loss (the released configs use 10). Default: 1.0.
        sync_density: sum the region counts and N over ``process_group`` (one all_reduce of
            bins + 1 int64 values per call) so that beta is the global batch's, and scale the
            loss so that DDP's average over workers is the global batch's loss and gradient
            (spec.md section 11). Needs torch.distributed initialised. Default: False.
        process_group: the group to sum over. Default: None (the default group).
        diagnostics: record what each call did (spec.md 13: counts, density, beta and gradient
            masses per region, positive fraction) in buffers on the device, without a host sync;
            read with :meth:`last_diagnostics`. Default: False.

    Call: ``loss(pred, target, label_weight=None, avg_factor=None, reduction_override=None)`` (the
    last two as mmdetection passes them; ``avg_factor`` is ignored): ``pred`` and ``target`` of one shape (e.g. (N, 4));
    ``label_weight`` of that shape or per anchor, ``pred.shape[:-1]``. Default: all valid.
    """

    kind = "r"

    def __init__(
        self,
        mu: float = 0.02,
        bins: int = 10,
        momentum: float = 0.0,
        dialect: str = "paper",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        sync_density: bool = False,
        process_group=None,
        diagnostics: bool = False,
    ) -> None:
        check_mu(mu)
        super().__init__(
            bins=bins,
            momentum=momentum,
            dialect=dialect,
            reduction=reduction,
            loss_weight=loss_weight,
            sync_density=sync_density,
            process_group=process_group,
            diagnostics=diagnostics,
        )
        self.mu = float(mu)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        label_weight: torch.Tensor | None = None,
        avg_factor=None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        """``avg_factor`` and ``reduction_override`` are mmdetection's call contract: ``avg_factor`` is
        accepted and ignored (GHM normalises by its own N, as the official GHMC does);
        ``reduction_override`` replaces ``reduction`` for this call."""
        reduction = self._reduction(reduction_override)
        check_tensor("pred", pred, allowed=(FLOATING,))
        if _serves(pred, self.mu, self.bins, self.diagnostics):
            fused = _prepare_native(pred, target, label_weight, self.mu, self.bins)
            return self._native(pred, fused, mu=self.mu, reduction=reduction, target=target)
        per_entry_loss, per_entry_grad, ind, ok, target_grad = _prepare(pred, target, label_weight, self.mu, self.bins)
        return self._harmonized(
            pred,
            per_entry_loss,
            per_entry_grad,
            ind,
            ok,
            reduction=reduction,
            target=target,
            per_entry_target_grad=target_grad,
        )

    def extra_repr(self) -> str:
        return f"mu={self.mu}, " + super().extra_repr()


def ghm_r_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    label_weight: torch.Tensor | None = None,
    *,
    mu: float = 0.02,
    bins: int = 10,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
    sync_density: bool = False,
    process_group=None,
    diagnostics: bool = False,
):
    """Stateless GHM-R (no momentum); same semantics and arguments as :class:`GHMRLoss`. With
    ``diagnostics=True`` returns ``(loss, Diagnostics)`` (spec.md 13), else the loss."""
    check_mu(mu)
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    check_tensor("pred", pred, allowed=(FLOATING,))
    if _serves(pred, mu, bins, diagnostics):
        loss, _, _ = native_loss(
            pred,
            _prepare_native(pred, target, label_weight, mu, bins),
            kind="r",
            mu=mu,
            bins=bins,
            momentum=0.0,
            dialect=dialect,
            reduction=reduction,
            loss_weight=loss_weight,
            sync_density=sync_density,
            process_group=process_group,
            target=target,
        )
        return loss
    per_entry_loss, per_entry_grad, ind, ok, target_grad = _prepare(pred, target, label_weight, mu, bins)
    out = harmonized_loss(
        pred,
        per_entry_loss,
        per_entry_grad,
        ind,
        ok,
        bins=bins,
        momentum=0.0,
        dialect=dialect,
        reduction=reduction,
        loss_weight=loss_weight,
        sync_density=sync_density,
        process_group=process_group,
        target=target,
        per_entry_target_grad=target_grad,
        diagnose=_diagnostics.collector("r", pred, target) if diagnostics else None,
    )
    return (out[0], out[3]) if diagnostics else out[0]
