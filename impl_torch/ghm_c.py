"""GHM-C: the gradient harmonized sigmoid cross entropy (spec.md section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _diagnostics
from ._checks import (
    BOOL,
    FLOATING,
    INTEGER,
    check_hyper,
    check_label_weight,
    check_tensor,
    compute_dtype,
    is_class_index_target,
    valid_mask,
)
from ._harmonize import FusedForward, harmonized_loss, native_loss, poison_in_counts, region_index
from ._module import GHMLossBase
from ._native import native_forward, serves, weight_kind


def cross_entropy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. (1) for logits and soft targets, max(x, 0) - x t + log(1 + e^-|x|), written as
    x (H(x) - t) + softplus(-|x|) with H(x) = [x > 0]: both terms are >= 0, so nothing cancels
    (softplus(x) - x t loses four digits at x = 7, t = 1 and gives 0 from x = 17; spec.md 8),
    and nothing overflows for any finite x. H(x) - t is exact (Sterbenz for t >= 1/2).

    Eager, in six passes and two buffers: heaviside gives H(x) in the float dtype at once, and
    softplus with beta = -1 writes -softplus(-|x|) = -log1p(e^-|x|) over |x| in place."""
    if torch.compiler.is_compiling():
        return x * ((x > 0).to(x.dtype) - t) + F.softplus(-x.abs())
    ce = torch.heaviside(x, x.new_zeros(())).sub_(t).mul_(x)
    neg_softplus = x.abs()
    # the stub omits out=, which the aten op takes (in place here; the eager path's tests cover it)
    torch._C._nn.softplus(neg_softplus, -1.0, 20.0, out=neg_softplus)  # type: ignore[call-arg]
    return ce.sub_(neg_softplus)


def _loss_and_grad(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Eq. 1, Eq. 2). Compiled, from one e = exp(-|x|): p = 1 / (1 + e) for x >= 0, else
    e / (1 + e), and log(1 + e^-|x|) = log1p(e); one exponential per entry instead of two."""
    if not torch.compiler.is_compiling():
        return cross_entropy(x, t), cross_entropy_grad(x, t)
    e = torch.exp(-x.abs())
    p = torch.where(x >= 0, 1.0, e) / (1.0 + e)
    return x * ((x > 0).to(x.dtype) - t) + torch.log1p(e), p - t


def cross_entropy_grad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. (2): dL_CE/dx = p - t, p = sigmoid(x)."""
    return torch.sigmoid(x).sub_(t)


def _finite(a: torch.Tensor) -> torch.Tensor:
    """All entries finite, as a 0-dim bool tensor: one min/max pass, no host sync."""
    lo, hi = torch.aminmax(a)
    return torch.isfinite(lo) & torch.isfinite(hi)


def _in_unit_interval(a: torch.Tensor) -> torch.Tensor:
    lo, hi = torch.aminmax(a)
    return (lo >= 0) & (hi <= 1)  # False for NaN


def _targets(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None, dtype: torch.dtype):
    """The per-entry target t (float), and whether it needs a range check: (t, check_range,
    labels_ok) with labels_ok the range check of class indices (spec.md 6-7)."""
    if not is_class_index_target(target, pred):
        return target.to(dtype), target.dtype != torch.bool, None
    n_classes = pred.shape[-1]  # class indices; label C = background (all-zero row)
    labels = target.to(torch.int64)  # compare as int64: an int8 label cannot hold C = 200
    t = (labels.unsqueeze(-1) == torch.arange(n_classes, device=labels.device)).to(dtype)
    if labels.numel() == 0:
        return t, False, None
    in_range = (labels >= 0) & (labels <= n_classes)
    if valid is not None:
        in_range |= ~valid.any(-1)
    return t, False, in_range.all()


def _prepare(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None, bins: int):
    """L_i (Eq. 1), dL_i/dx_i (Eq. 2), the region index of g_i = |p_i - t_i| (Eq. 3) with masked
    entries in the spare region, and the batch's ok flag (every valid entry finite and in range)."""
    check_tensor("pred", pred, allowed=(FLOATING,))
    check_tensor("target", target, allowed=(FLOATING, BOOL, INTEGER))
    valid = valid_mask(label_weight, pred)
    dtype = compute_dtype(pred)
    with torch.no_grad():
        x = pred.detach().to(dtype)
        t, check_range, ok = _targets(pred, target, valid, dtype)
        owned = valid is not None or dtype != pred.dtype  # x is a buffer of ours, not the caller's
        owned_t = valid is not None or t is not target
        if valid is not None:
            # Masked entries become (x, t) = (0, 1/2): a finite loss, gradient 0 and g = 0 exactly,
            # so no NaN or Inf they hold can reach the sums, and region_index can move them (g = 0)
            # to the spare region by an addition.
            x = torch.where(valid, x, 0.0)
            t = torch.where(valid, t, 0.5)
        bad = None
        if poison_in_counts():  # compiled: a per-entry check, fused, counted in the poison slot
            bad = ~torch.isfinite(x)
            if check_range:  # NaN and Inf targets fail it too
                bad |= ~((t >= 0) & (t <= 1))
        elif x.numel():
            finite = _finite(x)
            ok = finite if ok is None else ok & finite
            if check_range:
                ok = ok & _in_unit_interval(t)
        if ok is None:
            ok = torch.ones((), dtype=torch.bool, device=x.device)
        per_entry_loss, per_entry_grad = _loss_and_grad(x, t)
        # dL/dt = -x (spec.md 5), only for a target that is itself trained (a soft teacher)
        per_entry_target_grad = -x if target.requires_grad else None
        # From here on x is only scratch memory (a fresh 4 N-byte buffer costs page faults).
        # (eager only: compiled, the buffers are the compiler's, and out= needs a contiguous one)
        g = torch.abs(per_entry_grad, out=x) if owned and not torch.compiler.is_compiling() else per_entry_grad.abs()
        ind = region_index(g, bins, valid, bad)
    return per_entry_loss, per_entry_grad, ind, ok, t if owned_t else None, per_entry_target_grad


def _prepare_native(pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor | None, bins: int):
    """``_prepare`` for the fused kernels (``_native``; float32 CPU pred, ``serves``): the same
    checks, then one pass computing the region indices, the counts and the per-region loss sums.
    Returns the kernels' ``FusedForward``."""
    check_tensor("target", target, allowed=(FLOATING, BOOL, INTEGER))
    check_label_weight(label_weight, pred)
    with torch.no_grad():
        ok = None
        if is_class_index_target(target, pred):
            t, check_t, ok = _targets(pred, target, valid_mask(label_weight, pred), torch.float32)
        else:
            t, check_t = target.detach().to(torch.float32), target.dtype != torch.bool
        x, t = pred.detach(), t.contiguous()
        lw, lw_kind = weight_kind(label_weight, pred)
        ind, counts, sums = native_forward(x, t, lw, lw_kind, bins, "c", check_t, 0.0)
    return FusedForward(x, t, ind, counts, sums, ok)


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

    beta is a constant for backprop: ``d loss / d pred_i = loss_weight * beta_i * (p_i - t_i) / N``;
    a float ``target`` that requires grad (a soft teacher trained jointly) gets
    ``-loss_weight * beta_i * pred_i / N``; ``label_weight`` gets none. The loss is differentiable
    once: a backward with ``create_graph=True`` raises ``RuntimeError``.
    With float16/bfloat16 ``pred`` (autocast, ``GradScaler``) the gradient is multiplied by the
    upstream gradient (the loss scale) in float32 and rounded to ``pred``'s dtype once. Entries with
    ``label_weight <= 0`` (or NaN) are masked: not counted in N nor in the histogram, gradient 0,
    their values never read; positive weights act only as a mask. A NaN/Inf in a valid entry, a
    valid target outside [0, 1] or a valid class index outside [0, C] gives a NaN loss and leaves
    the EMA buffer untouched (checking would need a host sync). No valid entry gives 0. Statistics
    are computed in float32 (float64 for float64 ``pred``); the loss is returned in that dtype.

    EMA state: the buffers ``ema`` (always float32, even after ``.half()``) and
    ``ema_initialized``, in ``state_dict`` and moved by ``.to(device)``. They update on each call
    in training mode only; in ``eval()`` mode the loss is computed as a training call would
    compute it, but the buffers are left unchanged.

    Under ``torch.compile(fullgraph=True)`` a bad argument surfaces as
    ``torch._dynamo.exc.Unsupported`` holding the ``ValueError`` / ``TypeError`` message (spec.md 7).

    Args:
        bins: number of unit regions M. Default: 30.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"`` (1/N), ``"sum"`` or ``"none"`` (per entry beta * CE). Default: ``"mean"``.
        loss_weight: multiplier of the loss. Default: 1.0.
        sync_density: sum the region counts and N over ``process_group`` (one all_reduce of
            bins + 1 int64 values per call) so that beta is the global batch's, and scale the
            loss so that DDP's average over workers is the global batch's loss and gradient
            (spec.md section 11). Needs torch.distributed initialised. Default: False.
        process_group: the group to sum over. Default: None (the default group).
        diagnostics: record what each call did (spec.md 13: counts, density, beta and gradient
            masses per region, positive fraction) in buffers on the device, without a host sync;
            read with :meth:`last_diagnostics`. Default: False.

    Call: ``loss(pred, target, label_weight=None, avg_factor=None, reduction_override=None)`` (the
    last two as mmdetection passes them: ``avg_factor`` is ignored, GHM normalises by its own N).
    ``pred``: logits of any shape, e.g. (N, C).
    ``target``: shaped like ``pred`` (float in [0, 1], bool, or integer 0/1), or integer class
    indices of shape ``pred.shape[:-1]`` with index C = background (needs C >= 2: with one logit
    per anchor an integer target of shape (N,) is ambiguous and raises ``ValueError``).
    ``label_weight``: like ``pred``, or like ``pred.shape[:-1]`` (per anchor). Default: all valid.
    """

    def __init__(
        self,
        bins: int = 30,
        momentum: float = 0.0,
        dialect: str = "paper",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        sync_density: bool = False,
        process_group=None,
        diagnostics: bool = False,
    ) -> None:
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
        if serves(pred, self.bins, diagnostics=self.diagnostics):
            fused = _prepare_native(pred, target, label_weight, self.bins)
            return self._native(pred, fused, reduction=reduction, target=target)
        per_entry_loss, per_entry_grad, ind, ok, scratch, target_grad = _prepare(pred, target, label_weight, self.bins)
        return self._harmonized(
            pred,
            per_entry_loss,
            per_entry_grad,
            ind,
            ok,
            scratch,
            reduction=reduction,
            target=target,
            per_entry_target_grad=target_grad,
        )


def ghm_c_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    label_weight: torch.Tensor | None = None,
    *,
    bins: int = 30,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
    sync_density: bool = False,
    process_group=None,
    diagnostics: bool = False,
):
    """Stateless GHM-C (no momentum); same semantics and arguments as :class:`GHMCLoss`. With
    ``diagnostics=True`` returns ``(loss, Diagnostics)`` (spec.md 13), else the loss."""
    check_hyper(bins=bins, momentum=0.0, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    check_tensor("pred", pred, allowed=(FLOATING,))
    if serves(pred, bins, diagnostics=diagnostics):
        loss, _, _ = native_loss(
            pred,
            _prepare_native(pred, target, label_weight, bins),
            kind="c",
            mu=0.0,
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
    per_entry_loss, per_entry_grad, ind, ok, scratch, target_grad = _prepare(pred, target, label_weight, bins)
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
        scratch=scratch,
        sync_density=sync_density,
        process_group=process_group,
        target=target,
        per_entry_target_grad=target_grad,
        diagnose=_diagnostics.collector("c", pred, target) if diagnostics else None,
    )
    return (out[0], out[3]) if diagnostics else out[0]
