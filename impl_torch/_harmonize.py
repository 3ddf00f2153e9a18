"""The harmonizing weight beta, vectorised (spec.md sections 2.3 and 4), in pieces named after
the reference functions they compute (``reference.equations`` / ``reference.ghm``):

    region_index    ind(g) = min(floor(g M), M - 1)                  unit regions, Sec. 3.2
    region_counts   R_j, exact int64 counts                          Eq. (9)
    ema             S_j = alpha S_j + (1 - alpha) R_j                 Eq. (12)
    harmonize       beta_j = N / (S_j M) ("paper") or N / (A_j n)     Eqs. (10), (13); mmdet dialect

beta depends on the entry only through its region, so ``harmonize`` returns one value per
region (a table of bins + 1 values: the spare slot M holds the masked entries, weight 0; compiled,
a slot M + 1 holds the entries that poison the batch, weight NaN), and ``harmonized_loss``
gathers it per entry. No host sync, no loop over regions, no
data-dependent shape: everything compiles with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch


def index_dtype(bins: int) -> torch.dtype:
    """int32: ``index_select`` takes it, and it halves the traffic of int64."""
    return torch.int32


def region_index(
    g: torch.Tensor, bins: int, valid: torch.Tensor | None = None, bad: torch.Tensor | None = None
) -> torch.Tensor:
    """ind(g) = min(floor(g * M), M - 1), with g = 1 in the last region (spec.md 2.3).

    ``g`` must be >= 0 (a gradient norm, float32 or float64); it is consumed: scaled in place
    and, in eager float32, its memory reused for the int32 result. Entries not ``valid`` go to
    the spare region M; entries flagged ``bad`` (a valid entry that poisons the batch: NaN, Inf,
    a target out of range) to the poison slot M + 1, so that the histogram also says whether the
    batch is poisoned (see ``poison_in_counts``). Without ``bad``, a NaN or infinite g lands in
    some region in [0, M - 1], never out of range."""
    g.mul_(bins)
    if g.dtype == torch.float32 and not torch.compiler.is_compiling():
        ind = g.view(index_dtype(bins)).copy_(g)  # same width: convert in place, no new buffer
    else:
        ind = g.to(index_dtype(bins))
    ind.clamp_(0, bins - 1)  # truncation == floor for g >= 0
    if valid is not None:
        ind.masked_fill_(~valid, bins)
    if bad is not None:
        ind.masked_fill_(bad, bins + 1)
    return ind


def poison_in_counts() -> bool:
    """Whether the batch's validity is read from the histogram's poison slot (compiled code)
    rather than from a separate min/max pass (eager). Compiled, the per-entry check fuses into
    the kernel that computes the region index, and the separate pass over the inputs goes; in
    eager it would cost more elementwise passes than the min/max it replaces."""
    return torch.compiler.is_compiling()


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_PARALLEL_MIN = 1 << 20
_INTERLEAVE_MIN = 1 << 16


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="ghm-bincount")
        return _POOL


def _lanes(slots: int) -> int:
    """How many interleaved sub-histograms of uint8 indices fit in 256 slots (8, 4, 2 or 1)."""
    return next((k for k in (8, 4, 2) if k * slots <= 256), 1)


def _bincount_threads(flat: torch.Tensor, slots: int) -> torch.Tensor:
    chunks = min(torch.get_num_threads(), 8)
    if flat.numel() < _PARALLEL_MIN or chunks < 2:
        return torch.bincount(flat, minlength=slots)
    parts = flat.chunk(chunks)
    futures = [_pool().submit(torch.bincount, p, None, slots) for p in parts[1:]]
    total = torch.bincount(parts[0], minlength=slots)
    for f in futures:
        total += f.result()
    return total


def _bincount_cpu(flat: torch.Tensor, slots: int) -> torch.Tensor:
    """torch.bincount is a serial loop whose every step adds to the counter the step before may
    have written: when most entries share a region (the easy negatives of a detector) each
    add waits for the last one, about 8 cycles an entry. So: count uint8 indices; give entry k
    its own counter set (k mod L), which one int64 add per 8 entries does (index + (k mod L) *
    slots in each byte: no byte carries, as L * slots <= 256); count on several threads (the op
    releases the GIL); sum the sub-histograms. Exact int64 counts, 2-3x faster on skewed input."""
    if slots <= 256:
        flat = flat.to(torch.uint8)
    lanes = _lanes(slots) if flat.dtype == torch.uint8 else 1
    body = flat.numel() - flat.numel() % 8
    if lanes == 1 or body < _INTERLEAVE_MIN or flat.storage_offset() % 8:
        return _bincount_threads(flat, slots)
    offsets = sum(((k % lanes) * slots) << (8 * k) for k in range(8))  # little-endian byte k
    if sys.byteorder != "little":
        offsets = int.from_bytes(offsets.to_bytes(8, "little"), "big")
    spread = flat[:body].view(torch.int64).add(offsets).view(torch.uint8)
    counts = _bincount_threads(spread, lanes * slots).view(lanes, slots).sum(0)
    if body < flat.numel():
        counts += torch.bincount(flat[body:], minlength=slots)
    return counts


@torch.library.custom_op("ghm_loss::region_counts", mutates_args=())
def _region_counts(ind: torch.Tensor, slots: int) -> torch.Tensor:
    flat = ind.reshape(-1)
    if flat.device.type == "cpu":
        return _bincount_cpu(flat, slots)
    # bincount on an accelerator reads max(ind) on the host to size its output: a sync. A
    # scatter-add into a fixed number of slots does not.
    ones = torch.ones((), dtype=torch.int64, device=flat.device).expand(flat.numel())
    return torch.zeros(slots, dtype=torch.int64, device=flat.device).scatter_add_(0, flat.long(), ones)


@_region_counts.register_fake
def _(ind: torch.Tensor, slots: int) -> torch.Tensor:
    return ind.new_empty(slots, dtype=torch.int64)


def region_counts(ind: torch.Tensor, bins: int, poison_slot: bool = False) -> torch.Tensor:
    """R_j as exact int64 counts, length bins + 1 (the last slot counts the masked entries), or
    bins + 2 with ``poison_slot`` (then the last counts the entries ``region_index`` flagged bad).

    An opaque custom op for the compiler: it stays one histogram call (inductor would otherwise
    emit an atomic add per entry), and its output shape is static."""
    slots = bins + 1 + int(poison_slot)
    if torch.compiler.is_compiling() and slots <= 256:
        ind = ind.to(torch.uint8)  # fused into the kernel that computes ind: a 1-byte write per entry
    return _region_counts(ind, slots)


def ema(s_prev: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. (12): S^(t) = alpha S^(t-1) + (1 - alpha) R^(t)."""
    return alpha * s_prev + (1.0 - alpha) * r


def harmonize(
    counts: torch.Tensor,
    ok: torch.Tensor,
    *,
    bins: int,
    momentum: float,
    dialect: str,
    dtype: torch.dtype,
    state: torch.Tensor | None = None,
    initialized: torch.Tensor | None = None,
):
    """Per-region beta from the counts of ``region_counts`` (spec.md section 4).

    Returns (beta, new_state, new_initialized, n_valid): ``beta`` has bins + 1 values, the last
    (masked entries) 0, and NaN for every region when ``ok`` is False (a poisoned batch). The
    EMA buffers ``state`` / ``initialized`` are needed only when momentum > 0, and change only
    when the call has a valid entry and ``ok``; otherwise they are returned as given.

    "paper": beta_j = N / (S_j M), S = R, or the EMA of Eq. (12) with S^(0) := R^(1).
    "mmdet": beta_j = N / (A_j n), n = #non-empty regions, A = R, or an accumulator from zeros
             updated by Eq. (12) only where R_j > 0."""
    r = counts[:bins]
    n_valid = r.sum()
    rf = r.to(dtype)
    if momentum == 0.0:
        s = rf
    else:
        assert state is not None and initialized is not None, "momentum > 0 needs the EMA buffers"
        if dialect == "paper":
            s = torch.where(initialized, ema(state.to(dtype), rf, momentum), rf)
        else:
            s = torch.where(r > 0, ema(state.to(dtype), rf, momentum), state.to(dtype))
    n_regions = bins if dialect == "paper" else (r > 0).sum().clamp(min=1).to(dtype)
    beta = torch.where(r > 0, n_valid.to(dtype) / (s * n_regions), 0.0)  # empty regions are never read
    beta = torch.where(ok, beta, torch.nan)
    beta = torch.cat([beta, beta.new_zeros(1)])
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    assert state is not None and initialized is not None, "momentum > 0 needs the EMA buffers"
    update = ok & (n_valid > 0)
    return beta, torch.where(update, s.to(state.dtype), state), initialized | update, n_valid


@torch.library.custom_op("ghm_loss::harmonize", mutates_args=())
def _harmonize_op(
    counts: torch.Tensor,
    ok: torch.Tensor,
    state: torch.Tensor | None,
    initialized: torch.Tensor | None,
    bins: int,
    momentum: float,
    dialect: str,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    beta, new_state, new_initialized, n_valid = harmonize(
        counts, ok, bins=bins, momentum=momentum, dialect=dialect, dtype=dtype, state=state, initialized=initialized
    )
    if momentum == 0.0:  # no state: empty placeholders (a custom op returns tensors, never its inputs)
        return beta, counts.new_empty(0, dtype=torch.float32), counts.new_empty(0, dtype=torch.bool), n_valid
    return beta, new_state, new_initialized, n_valid


@_harmonize_op.register_fake
def _(counts, ok, state, initialized, bins, momentum, dialect, dtype):
    empty_state = momentum == 0.0
    return (
        counts.new_empty(bins + 1, dtype=dtype),
        counts.new_empty(0 if empty_state else bins, dtype=torch.float32),
        counts.new_empty(0 if empty_state else (), dtype=torch.bool),
        counts.new_empty((), dtype=torch.int64),
    )


def _harmonize_compiled(counts, ok, *, bins, momentum, dialect, dtype, state, initialized):
    """``harmonize`` as one opaque op under torch.compile: its arithmetic on bins + 1 values must
    run once per call, not be inlined into the per-entry loop (as inductor otherwise does)."""
    beta, new_state, new_initialized, n_valid = _harmonize_op(
        counts, ok, state, initialized, bins, momentum, dialect, dtype
    )
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    return beta, new_state, new_initialized, n_valid


SECOND_ORDER_ERROR = (
    "the GHM losses are differentiable once: their gradient is formed with the loss (beta is a "
    "constant for backprop, spec.md 5) and has no graph of its own, so it cannot be taken with "
    "create_graph=True (a gradient penalty, a Hessian-vector product, second-order "
    "meta-learning through the loss); take it without create_graph"
)


class _WithGradient(torch.autograd.Function):
    """A loss whose gradients were computed with it: backward is one multiply per input, and
    nothing but those gradients is kept alive for it (beta is a constant for backprop, spec.md
    section 5). They are kept in the compute dtype and multiplied by the upstream gradient there:
    under a loss scale (GradScaler) the per-entry gradients, 1e-7 and below at detector sizes,
    are lifted into float16's range before the single cast to the input's dtype (spec.md 8).
    Differentiable once: nothing records how the gradients depend on the inputs, so a backward
    that would build a graph of them (``create_graph=True``) raises instead of returning
    gradients whose own derivative would silently be 0."""

    @staticmethod
    def forward(ctx, pred, target, loss, grad, target_grad):
        ctx.save_for_backward(grad, target_grad)
        ctx.dtypes = (pred.dtype, None if target is None else target.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative is on its way
            raise RuntimeError(SECOND_ORDER_ERROR)
        grad, target_grad = ctx.saved_tensors
        pred_dtype, target_dtype = ctx.dtypes
        d_pred = None if grad is None else (grad * grad_out).to(pred_dtype)
        d_target = None if target_grad is None else (target_grad * grad_out).to(target_dtype)
        return d_pred, d_target, None, None, None


def weights_table(
    counts: torch.Tensor,
    ok: torch.Tensor,
    *,
    bins: int,
    momentum: float,
    dialect: str,
    reduction: str,
    loss_weight,
    dtype: torch.dtype,
    state=None,
    initialized=None,
    sync_density: bool = False,
    process_group=None,
    details: bool = False,
    opaque: bool = True,
):
    """beta_j * scale per region from the counts (bins + 1: the last, the masked entries', 0), with
    scale = loss_weight (/ N for "mean"; times the world size W with ``sync_density``, spec.md 11).
    Returns (table, new_state, new_initialized), and with ``details`` a fourth value
    (counts, ok, beta, n_valid), the counts and validity global under ``sync_density``.
    ``opaque``: under torch.compile, ``harmonize`` is one opaque op (``_harmonize_compiled``), so
    that inductor does not inline it into a per-entry loop that reads the table; the fused
    kernels' callers, whose per-entry loops are the kernels, pass False and let inductor compile
    it (one small fused kernel instead of a dozen eager ops)."""
    workers = 1
    if sync_density:
        from ._distributed import sum_counts, world_size

        workers = world_size(process_group)
        counts, ok = sum_counts(counts, ok, bins, process_group)
    opaque = opaque and torch.compiler.is_compiling()
    beta, new_state, new_initialized, n_valid = (_harmonize_compiled if opaque else harmonize)(
        counts, ok, bins=bins, momentum=momentum, dialect=dialect, dtype=dtype, state=state, initialized=initialized
    )
    scale = loss_weight * workers if reduction != "none" else loss_weight
    if reduction == "mean":
        scale = scale / n_valid.clamp(min=1).to(dtype)
    table = (beta * scale).to(dtype)
    if details:  # what the diagnostics read (spec.md 13): the global counts and validity, beta, N
        return table, new_state, new_initialized, (counts, ok, beta, n_valid)
    return table, new_state, new_initialized


def harmonized_loss(
    pred: torch.Tensor,
    per_entry_loss: torch.Tensor,
    per_entry_grad: torch.Tensor,
    ind: torch.Tensor,
    ok: torch.Tensor,
    *,
    bins: int,
    momentum: float,
    dialect: str,
    reduction: str,
    loss_weight,
    state=None,
    initialized=None,
    scratch: torch.Tensor | None = None,
    sync_density: bool = False,
    process_group=None,
    target: torch.Tensor | None = None,
    per_entry_target_grad: torch.Tensor | None = None,
    diagnose=None,
):
    """Eqs. (11) / (19): loss_weight * reduction(beta_i * L_i), with d loss / d pred attached.

    ``per_entry_loss`` / ``per_entry_grad`` (L_i and dL_i/dpred_i, computed without autograd)
    must be finite on masked entries; ``ind`` puts those in the spare region (weight 0). Both
    are consumed (overwritten), and so is ``scratch`` (a float buffer shaped like them, or None).
    ``per_entry_target_grad`` (dL_i/dtarget_i, or None) is weighted likewise and attached to
    ``target``, for a target that requires grad.
    With ``sync_density`` the counts (and N) are those of the global batch over
    ``process_group``, and the loss is scaled by the world size W: "mean" is
    W / N_global * sum_local, "sum" is W * sum_local, so that the average over workers (DDP's)
    of the values and of the gradients is the global batch's (spec.md section 11).
    Returns (loss, new_state, new_initialized), and the diagnostics of spec.md 13 as a fourth
    value when ``diagnose`` (``_diagnostics.collector``) is given."""
    dtype = per_entry_loss.dtype
    with torch.no_grad():
        poisoned_slot = poison_in_counts()
        counts = region_counts(ind, bins, poison_slot=poisoned_slot)
        if poisoned_slot:
            ok = ok & (counts[bins + 1] == 0)
            counts = counts[: bins + 1]
        if diagnose is None:
            table, new_state, new_initialized = weights_table(
                counts,
                ok,
                bins=bins,
                momentum=momentum,
                dialect=dialect,
                reduction=reduction,
                loss_weight=loss_weight,
                dtype=dtype,
                state=state,
                initialized=initialized,
                sync_density=sync_density,
                process_group=process_group,
            )
        else:
            local_counts = counts
            table, new_state, new_initialized, (counts, ok, beta, n_valid) = weights_table(
                counts,
                ok,
                bins=bins,
                momentum=momentum,
                dialect=dialect,
                reduction=reduction,
                loss_weight=loss_weight,
                dtype=dtype,
                state=state,
                initialized=initialized,
                sync_density=sync_density,
                process_group=process_group,
                details=True,
            )
            diagnostics = diagnose(  # before per_entry_grad becomes the gradient
                ind=ind,
                per_entry_grad=per_entry_grad,
                counts=counts,
                local_counts=local_counts,
                ok=ok,
                beta=beta,
                new_state=new_state,
                n_valid=n_valid,
                bins=bins,
                momentum=momentum,
                reduction=reduction,
                loss_weight=loss_weight,
            )
        if poisoned_slot:
            table = torch.cat([table, table.new_full((1,), torch.nan)])  # the poison slot's weight
        if torch.compiler.is_compiling():
            # ind is in [0, bins + 1] by construction (region_index): no per-entry bounds check in the kernel
            w = torch.ops.aten._unsafe_index(table, [ind])
        elif scratch is None or not scratch.is_contiguous():  # a transposed input's buffers are transposed too
            w = torch.index_select(table, 0, ind.reshape(-1)).view(ind.shape)  # beta_i * scale, per entry
        else:
            w = torch.index_select(table, 0, ind.reshape(-1), out=scratch.view(-1)).view(ind.shape)
        # The gradient overwrites per_entry_grad (the callers' scratch): one buffer less to fault in.
        # It stays in the compute dtype until the upstream gradient has multiplied it (backward).
        grad = per_entry_grad.mul_(w) if pred.requires_grad else None
        target_grad = per_entry_target_grad.mul_(w) if per_entry_target_grad is not None else None
        # A pairwise sum (torch.sum), not torch.dot: BLAS accumulates sequentially, 5e-5 off at 2^24 entries.
        loss = w.mul_(per_entry_loss) if reduction == "none" else w.mul_(per_entry_loss).sum()
    if grad is not None or target_grad is not None:
        attached = target if target_grad is not None else None
        loss = _WithGradient.apply(pred, attached, loss, grad, target_grad)
    return (loss, new_state, new_initialized) if diagnose is None else (loss, new_state, new_initialized, diagnostics)


class _NativeGradient(torch.autograd.Function):
    """A loss from the fused kernels (``_native``), whose backward is the kernels' second pass:
    table[ind_i] * dL_i/dx_i recomputed from the saved inputs and the one-byte region index,
    with the upstream gradient folded into the float32 table (spec.md 8: the product is formed
    in float32). Differentiable once, as ``_WithGradient``."""

    @staticmethod
    def forward(ctx, pred, target, loss, x, t, ind, table, kind, bins, mu, per_entry_upstream):
        ctx.save_for_backward(x, t, ind, table)
        ctx.config = (kind, bins, mu, per_entry_upstream, None if target is None else target.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative is on its way
            raise RuntimeError(SECOND_ORDER_ERROR)
        from ._native import native_backward

        x, t, ind, table = ctx.saved_tensors
        kind, bins, mu, per_entry_upstream, target_dtype = ctx.config
        need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        scaled = table if per_entry_upstream else table * grad_out
        d_pred, d_target, _ = native_backward(x, t, ind, scaled, bins, kind, mu, need_x, need_t, False)
        if per_entry_upstream:  # reduction "none": an upstream gradient per entry
            d_pred = d_pred.mul_(grad_out) if need_x else None
            d_target = d_target.mul_(grad_out) if need_t else None
        return (
            d_pred if need_x else None,
            d_target.to(target_dtype) if need_t else None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


class FusedForward(NamedTuple):
    """What the fused kernels' forward (``_native.native_forward``) leaves for the loss: the float32
    inputs it read (kept for the backward pass), the one-byte region index, the counts and the
    per-region loss sums (each with the masked slot ``bins`` and the poison slot ``bins + 1``),
    and ``ok``, a range check of class-index targets (None where the kernels check t themselves)."""

    x: torch.Tensor
    t: torch.Tensor
    ind: torch.Tensor
    counts: torch.Tensor
    sums: torch.Tensor
    ok: torch.Tensor | None = None


def native_loss(
    pred: torch.Tensor,
    fused: FusedForward,
    *,
    kind: str,
    mu: float,
    bins: int,
    momentum: float,
    dialect: str,
    reduction: str,
    loss_weight,
    state=None,
    initialized=None,
    sync_density: bool = False,
    process_group=None,
    target: torch.Tensor | None = None,
):
    """Eqs. (11) / (19) from the fused kernels' forward (``FusedForward``): sum_i beta_i L_i =
    sum_j beta_j S_j, summed in float64. ``target`` is the caller's target, for its gradient.
    Returns (loss, new_state, new_initialized)."""
    from ._native import native_backward

    x, t, ind, counts, sums, ok = fused
    dtype = torch.float32
    with torch.no_grad():
        clean = counts[bins + 1] == 0
        ok = clean if ok is None else ok & clean
        table, new_state, new_initialized = weights_table(
            counts[: bins + 1],
            ok,
            bins=bins,
            momentum=momentum,
            dialect=dialect,
            reduction=reduction,
            loss_weight=loss_weight,
            dtype=dtype,
            state=state,
            initialized=initialized,
            sync_density=sync_density,
            process_group=process_group,
            opaque=False,
        )
        table = torch.cat([table, table.new_full((1,), torch.nan)])  # the poison slot's weight
        if reduction == "none":
            loss = native_backward(x, t, ind, table, bins, kind, mu, False, False, True)[2]
        else:
            loss = (table[: bins + 1].to(torch.float64) * sums[: bins + 1]).sum().to(dtype)
    attached = target if target is not None and target.requires_grad else None
    if not pred.requires_grad and attached is None:
        return loss, new_state, new_initialized
    return (
        _NativeGradient.apply(pred, attached, loss, x, t, ind, table, kind, bins, mu, reduction == "none"),
        new_state,
        new_initialized,
    )
