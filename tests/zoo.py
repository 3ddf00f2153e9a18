"""A zoo of GHM ports for proving the conformance kit: correct ports of both dialects written in
different ways, the port shapes people write (no label weight, plain functions, weights only,
per-entry output, class indices), the official code as it is written (torch), and one small
port per realistic fault (the known faults of public ports, shared/paper.md, and plausible
porting bugs), each with the property that must name it.

``Port`` is written as the official code is: float32 NumPy, the per-entry loss over *every*
entry (a masked one is multiplied by a zero weight, so NaN it holds propagates: a robustness
note, not a fault), edges ``k / M`` with the last widened, a loop over regions. Each fault is a
subclass that overrides the one step it gets wrong. Written independently of ``reference``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import numpy as np

from ghm_conformance.protocol import from_weights, with_class_index_targets

F32 = np.float32
READS_MASKED = "reads masked values (NaN/Inf there propagates)"


class Port:
    """A correct GHM port in the official code's style (mmdet dialect unless ``dialect``)."""

    loss = "c"
    dialect = "mmdet"
    dtype = F32

    def __init__(self, *, bins, momentum, mu=0.02, **_):
        self.bins, self.momentum, self.mu = bins, momentum, mu
        self.acc = np.zeros(bins, self.dtype)
        self.seen = False
        self.calls = 0

    # -- the steps, in order; a faulty port overrides one

    def per_entry(self, pred, target):
        """(L_i, dL_i/dx_i, g_i) over every entry, masked ones included."""
        x, t = pred.astype(self.dtype), target.astype(self.dtype)
        if self.loss == "c":
            p = self.dtype(1) / (self.dtype(1) + np.exp(-x))
            return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))), p - t, np.abs(p - t)
        d = x - t
        root = np.sqrt(d * d + self.dtype(self.mu) ** 2)
        return d * d / (root + self.dtype(self.mu)), d / root, np.abs(d) / root

    def edges(self):
        e = np.arange(self.bins + 1, dtype=self.dtype) / self.dtype(self.bins)
        e[-1] += self.dtype(1e-6) if self.loss == "c" else self.dtype(1e3)
        return e

    def inside(self, g, edges, i):
        return (g >= edges[i]) & (g < edges[i + 1])

    def counted(self, valid):
        """The entries the histogram counts."""
        return valid

    def count(self, members):
        return members.sum()

    def counts(self, g, edges, valid):
        counts = np.zeros(self.bins, self.dtype)
        for i in range(self.bins):
            counts[i] = self.count(self.inside(g, edges, i) & self.counted(valid))
        return counts

    def density(self, counts, any_valid):
        """The per-region density the weights divide by: the counts, or their EMA."""
        if not self.momentum:
            return counts
        m = self.dtype(self.momentum)
        if self.dialect == "mmdet":  # from zeros, updated only where a region is non-empty
            new = np.where(counts > 0, m * self.acc + (1 - m) * counts, self.acc)
        else:  # from the first counts, every region updated
            new = m * (self.acc if self.seen else counts) + (1 - m) * counts
        if any_valid:
            self.acc[:] = new
            self.seen = True
        return new

    def weights(self, g, edges, counts, dens, valid, tot):
        w = np.zeros(g.shape, self.dtype)
        for i in range(self.bins):
            if counts[i] > 0:
                w[self.inside(g, edges, i) & valid] = tot / dens[i]
        n = int(np.count_nonzero(counts))
        return w / self.bins if self.dialect == "paper" else (w / n if n else w)

    def tot(self, valid, label_weight):
        return max(float(valid.sum()), 1.0)

    def finish(self, w, per, dper, valid, tot):
        """(loss, grad): BCE over every entry times the weights, as autograd would give it."""
        return float(np.sum(w * per) / tot), w * dper / tot

    def __call__(self, pred, target, label_weight):
        self.calls += 1
        valid = label_weight > 0
        with np.errstate(all="ignore"):  # NaN and Inf in masked entries are the kit's business
            per, dper, g = self.per_entry(pred, target)
            edges = self.edges()
            counts = self.counts(g, edges, valid)
            dens = self.density(counts, valid.any())
            tot = self.tot(valid, label_weight)
            w = self.weights(g, edges, counts, dens, valid, tot)
            return self.finish(w, per, dper, valid, tot)


def port(cls, **attrs):
    """A port factory of ``cls`` with class attributes overridden (loss, dialect, dtype)."""
    variant = type(cls.__name__, (cls,), attrs) if attrs else cls
    return lambda **kw: variant(**kw)


# ---------------------------------------------------------------- correct ports written other ways


class MasksFirst(Port):
    """Zeroes the masked entries' terms before they meet the weights: no note either."""

    def finish(self, w, per, dper, valid, tot):
        return float(np.sum(np.where(valid, w * per, 0)) / tot), np.where(valid, w * dper, 0) / tot


class SortCounting(Port):
    """Counts by sorting the region indices, not by masks."""

    def counts(self, g, edges, valid):
        ind = np.sort(np.minimum(np.floor(g[valid] * self.dtype(self.bins)).astype(np.int64), self.bins - 1))
        return np.array(
            [np.searchsorted(ind, i, "right") - np.searchsorted(ind, i, "left") for i in range(self.bins)], self.dtype
        )


class RegionSums(Port):
    """Sums the loss region by region in float32."""

    def finish(self, w, per, dper, valid, tot):
        ind = np.minimum(np.floor(np.abs(dper) * F32(self.bins)).astype(np.int64), self.bins - 1)
        terms = w * per
        return float(sum(np.sum(terms[ind == j], dtype=F32) for j in range(self.bins)) / tot), w * dper / tot


class MaskedInN(Port):
    """Counts masked entries in tot (N): harmless, tot cancels in the mean."""

    def tot(self, valid, label_weight):
        return float(label_weight.size)


class BinsByNBroadcast(Port):
    """Correct values in O(bins x N) memory: a one-hot of every entry at once."""

    def counts(self, g, edges, valid):
        onehot = (g.reshape(1, -1) >= edges[:-1, None]) & (g.reshape(1, -1) < edges[1:, None])
        return (onehot & valid.reshape(1, -1)).sum(axis=1).astype(self.dtype)


class Float32SequentialCounts(Port):
    """One float32 increment per entry: right until a region passes 2^24, then stalls."""

    def count(self, members):
        return np.cumsum(members.ravel(), dtype=F32)[-1] if members.size else 0


class LiteralASL1(Port):
    """GHM-R with the paper's literal sqrt(d^2 + mu^2) - mu (the official formula)."""

    loss = "r"

    def per_entry(self, pred, target):
        _per, dper, g = super().per_entry(pred, target)
        d = pred.astype(self.dtype) - target.astype(self.dtype)
        return np.sqrt(d * d + self.dtype(self.mu) ** 2) - self.dtype(self.mu), dper, g


class NoMomentum(Port):
    def __init__(self, *, momentum, **kw):
        if momentum:
            raise NotImplementedError("this port has no momentum")
        super().__init__(momentum=momentum, **kw)


# ---------------------------------------------------------------- one fault each


class EdgeClosed(Port):
    """lo <= g <= hi: an entry exactly on an edge is in two regions."""

    def inside(self, g, edges, i):
        return (g >= edges[i]) & (g <= edges[i + 1])


class BinaryTargets(Port):
    """Reads soft targets as 0/1 when forming g."""

    def per_entry(self, pred, target):
        per, dper, _ = super().per_entry(pred, target)
        p = dper + target
        return per, dper, np.where(target >= 0.5, 1 - p, p)


class FloorMinusEpsilon(Port):
    """Regions by floor(g (M - 1e-4)), as a widely copied port writes them: g = 1 lands in the last
    region, but a g on an edge, or up to k 1e-4 / M^2 above it, in the region below."""

    def counts(self, g, edges, valid):
        self.ind = np.floor(g * (self.dtype(self.bins) - self.dtype(1e-4))).astype(np.int64)
        return np.array([np.sum((self.ind == i) & valid) for i in range(self.bins)], self.dtype)

    def inside(self, g, edges, i):
        return self.ind == i


class HalfPrecisionG(Port):
    """Bins g after rounding it to float16."""

    def per_entry(self, pred, target):
        per, dper, g = super().per_entry(pred, target)
        return per, dper, g.astype(np.float16).astype(F32)


class Float16Counts(Port):
    """Inexact past 2048, infinite past 65504."""

    def count(self, members):
        return np.float16(members.sum())


class Int16Counts(Port):
    """Wraps past 32767."""

    def count(self, members):
        return members.sum().astype(np.int16)


class ChunkedHistogram(Port):
    """Counts in chunks of 4096 entries and drops the last, partial one."""

    def counted(self, valid):
        keep = np.arange(valid.size).reshape(valid.shape) < valid.size - valid.size % 4096
        return valid & keep if valid.size > 4096 else valid


class FastPath(Port):
    """A 'fast' branch above 2048 entries normalises by M instead of n."""

    def weights(self, g, edges, counts, dens, valid, tot):
        w = super().weights(g, edges, counts, dens, valid, tot)
        n = int(np.count_nonzero(counts))
        return w * n / self.bins if valid.sum() > 2048 and n else w


class EmaResetAtCall5(Port):
    dialect = "paper"

    def density(self, counts, any_valid):
        dens = super().density(counts, any_valid)
        return counts if self.calls == 5 else dens


class EmaInitOnEmpty(Port):
    """An empty first call 'initialises' the paper EMA with zeros."""

    dialect = "paper"

    def density(self, counts, any_valid):
        if not any_valid:
            self.seen = True
        return super().density(counts, any_valid)


class EmaFromZero(Port):
    """The paper EMA started from zeros (as mmdet's accumulator is)."""

    dialect = "paper"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = True


class PaperEmaStart(Port):
    """The mmdet accumulator started from the first counts (as the paper's EMA is)."""

    def density(self, counts, any_valid):
        if any_valid and not self.seen:
            self.acc[:] = counts
        return super().density(counts, any_valid)


class SharedEma(Port):
    """The accumulator is a class attribute: every instance (every loss object of the program)
    shares one EMA, so a second loss continues from the first's state."""

    shared: typing.ClassVar[dict] = {}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.acc = SharedEma.shared.setdefault((self.bins, self.loss, self.dialect), np.zeros(self.bins, self.dtype))


class EmaClamped(Port):
    """Clamps the weights at 1: rare regions are never up-weighted."""

    def weights(self, g, edges, counts, dens, valid, tot):
        w = super().weights(g, edges, counts, dens, valid, tot)
        return np.minimum(w, self.dtype(1)) if self.momentum else w


class DropsSaturated(Port):
    """No widened last edge: g = 1 falls in no region."""

    def edges(self):
        return np.arange(self.bins + 1, dtype=self.dtype) / self.dtype(self.bins)


class SaturatedInRegion0(Port):
    def per_entry(self, pred, target):
        per, dper, g = super().per_entry(pred, target)
        return per, dper, np.where(g >= 1, self.dtype(0), g)


class MaskedInHistogram(Port):
    def counted(self, valid):
        return np.ones_like(valid)


class MaskedWeighted(Port):
    """Masked entries get the weight of their region."""

    def weights(self, g, edges, counts, dens, valid, tot):
        return super().weights(g, edges, counts, dens, np.ones_like(valid), tot)


class MaskFromOneColumn(Port):
    """Takes each row's mask from its first column."""

    def __call__(self, pred, target, label_weight):
        return super().__call__(pred, target, np.repeat(label_weight[:, :1], label_weight.shape[1], axis=1))


class MaskedInNUnnormalised(Port):
    """Divides the loss by every entry, masked ones included, while beta uses the valid ones."""

    def finish(self, w, per, dper, valid, tot):
        return float(np.sum(np.where(valid, w * per, 0)) / valid.size), np.where(valid, w * dper, 0) / valid.size


class GradLeaksIntoMasked(MasksFirst):
    """The loss is right; masked entries get the plain gradient dL/dx / N."""

    def finish(self, w, per, dper, valid, tot):
        loss, grad = super().finish(w, per, dper, valid, tot)
        return loss, np.where(valid, grad, dper / tot)


class CrashesOnMaskedNaN(MasksFirst):
    """Gathers beta by an index cast from a masked NaN g, as a TF port does: IndexError."""

    def __call__(self, pred, target, label_weight):
        if np.isnan(np.where(label_weight > 0, 0, pred)).any():
            raise IndexError("indices[1] = -2147483648 is not in [0, bins)")
        return super().__call__(pred, target, label_weight)


class UnguardedN(Port):
    """Divides by n with no guard: NaN when every entry is masked."""

    def weights(self, g, edges, counts, dens, valid, tot):
        w = Port.weights(self, g, edges, counts, dens, valid, tot)
        n = int(np.count_nonzero(counts))
        if n == 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                return w / self.dtype(0)
        return w


class WeightsNotApplied(Port):
    def weights(self, g, edges, counts, dens, valid, tot):
        return np.where(valid, self.dtype(1), self.dtype(0))


class GradUnweighted(Port):
    def finish(self, w, per, dper, valid, tot):
        return float(np.sum(w * per) / tot), np.where(valid, dper, 0) / tot


class WeightMultiplied(Port):
    """Multiplies the label weights in."""

    def __call__(self, pred, target, label_weight):
        self.label_weight = label_weight
        return super().__call__(pred, target, label_weight)

    def weights(self, g, edges, counts, dens, valid, tot):
        return super().weights(g, edges, counts, dens, valid, tot) * self.label_weight


class UndefinedMu(Port):
    loss = "r"

    def __call__(self, pred, target, label_weight):
        raise NameError("name 'mu' is not defined")


# ---------------------------------------------------------------- the official code as it is written (torch)

_OFFICIAL: dict = {}


def _official_modules() -> dict:
    """mmdetection's GHMC and GHMR (and GHM_Detection's) as the code is written: edges k/M with the
    last widened (+1e-6; GHM-R: 1e3), a Python loop over regions with a host sync each, the
    accumulator from zeros updated where a region is non-empty, weights divided by n, the loss
    (BCE; GHM-R: the literal sqrt(d^2 + mu^2) - mu) over every entry times the weights, summed
    over tot (GHM-C: the valid count; GHM-R: the sum of the label weights). Our transcription of
    its semantics (shared/paper.md section 5), built when first asked for (it needs torch)."""
    if _OFFICIAL:
        return _OFFICIAL
    import torch
    import torch.nn.functional as F

    class _Loop(torch.nn.Module):
        def __init__(self, bins, momentum, last_edge):
            super().__init__()
            self.bins, self.momentum = bins, momentum
            self.edges = torch.arange(bins + 1).float() / bins
            self.edges[-1] = last_edge(self.edges[-1])
            self.acc_sum = torch.zeros(bins)

        def weights(self, g, valid, tot):
            weights, n = torch.zeros_like(g), 0
            for i in range(self.bins):
                inds = (g >= self.edges[i]) & (g < self.edges[i + 1]) & valid
                num_in_bin = inds.sum().item()
                if num_in_bin > 0:
                    if self.momentum > 0:
                        self.acc_sum[i] = self.momentum * self.acc_sum[i] + (1 - self.momentum) * num_in_bin
                        weights[inds] = tot / self.acc_sum[i]
                    else:
                        weights[inds] = tot / num_in_bin
                    n += 1
            return weights / n if n > 0 else weights

    class OfficialGHMC(_Loop):
        def __init__(self, bins=10, momentum=0.0):
            super().__init__(bins, momentum, lambda e: e + 1e-6)

        def forward(self, pred, target, label_weight):
            if pred.dim() != target.dim():  # class indices (N,), C = background: one-hot rows
                onehot = torch.zeros_like(pred)
                keep = (target >= 0) & (target < pred.size(-1))
                onehot[keep.nonzero(as_tuple=True)[0], target[keep]] = 1
                target, label_weight = onehot, label_weight.view(-1, 1).expand_as(pred)
            target, label_weight = target.float(), label_weight.float()
            g = torch.abs(pred.sigmoid().detach() - target)
            valid = label_weight > 0
            tot = max(valid.float().sum().item(), 1.0)
            loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
            return (loss * self.weights(g, valid, tot)).sum() / tot

    class OfficialGHMR(_Loop):
        def __init__(self, mu=0.02, bins=10, momentum=0.0):
            super().__init__(bins, momentum, lambda e: 1e3)
            self.mu = mu

        def forward(self, pred, target, label_weight):
            diff = pred - target
            loss = torch.sqrt(diff * diff + self.mu * self.mu) - self.mu
            g = torch.abs(diff / torch.sqrt(self.mu * self.mu + diff * diff)).detach()
            tot = max(label_weight.float().sum().item(), 1.0)
            return (loss * self.weights(g, label_weight > 0, tot)).sum() / tot

    _OFFICIAL.update(c=OfficialGHMC, r=OfficialGHMR)
    return _OFFICIAL


def official_ghmc(targets: str = "per_entry"):
    """The official GHMC; ``targets="class_index"``: called as mmdetection calls it, labels (N,)."""
    from ghm_conformance import from_torch_module

    cls = _official_modules()["c"]
    return from_torch_module(lambda bins, momentum: cls(bins, momentum), targets=targets)


def official_ghmr():
    from ghm_conformance import from_torch_module

    cls = _official_modules()["r"]
    return from_torch_module(lambda bins, momentum, mu: cls(mu, bins, momentum))


# ---------------------------------------------------------------- the port shapes people write


def no_label_weight_port(*, bins, momentum, **hyper):
    """A correct mmdet GHM-C port whose step takes (pred, target) only."""
    step = Port(bins=bins, momentum=momentum, **hyper)
    return lambda pred, target: step(pred, target, np.ones_like(pred))


class _WeightsOnly(Port):
    def finish(self, w, per, dper, valid, tot):
        return np.where(valid, w, 0)


class _PerEntry(Port):
    def finish(self, w, per, dper, valid, tot):
        return np.where(valid, w * per, 0)


weights_only_port = from_weights(port(_WeightsOnly), "c")
per_entry_port = port(_PerEntry)


def _class_index_port(*, bins, momentum, **hyper):
    """Takes mmdetection labels (N,) with C = background and per-anchor weights (N,)."""
    step = Port(bins=bins, momentum=momentum, **hyper)

    def run(pred, labels, weights):
        n_classes = pred.shape[-1]
        onehot = (labels[:, None] == np.arange(n_classes)).astype(F32)
        return step(pred, onehot, np.repeat(weights[:, None], n_classes, axis=1).astype(F32))

    return run


class_index_port = with_class_index_targets(_class_index_port)


def torch_function_port():
    """A plain torch function, official-style mmdet GHM-C without momentum, that zeroes masked
    entries before the loss (so no note)."""
    import torch

    from ghm_conformance import from_torch_function

    def ghmc(pred, target, label_weight, *, bins):
        edges = torch.arange(bins + 1, dtype=torch.float32) / bins
        edges[-1] += 1e-6
        valid = label_weight > 0
        pred = torch.where(valid, pred, 0.0)  # masked entries may hold NaN: never let them reach the sum
        target = torch.where(valid, target, 0.0)
        g = (pred.sigmoid().detach() - target).abs()
        tot = max(valid.float().sum().item(), 1.0)
        weights, n = torch.zeros_like(pred), 0
        for i in range(bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            num = inds.sum().item()
            if num > 0:
                weights[inds] = tot / num
                n += 1
        if n > 0:
            weights = weights / n
        return torch.nn.functional.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum") / tot

    return from_torch_function(ghmc)


def mmdet_module_port():
    """An nn.Module with mmdetection's call contract: labels (N,), weights (N,), avg_factor and
    reduction_override keywords: our GHMCLoss called as mmdetection calls it."""
    from ghm_conformance import from_torch_module
    from impl_torch import GHMCLoss

    return from_torch_module(
        lambda **kw: GHMCLoss(dialect="mmdet", **kw),
        targets="class_index",
        call_kwargs={"avg_factor": 7.0, "reduction_override": None},
    )


# ---------------------------------------------------------------- the zoo and what the kit must say of each


@dataclass(frozen=True)
class ZooPort:
    name: str
    make_port: object  # a port factory, or a zero-argument function returning one (optional deps)
    loss_kind: str = "c"
    fails: str | None = None  # the property the kit must name, None for a correct port
    verdict: str | None = None  # the dialect label expected (None: not asserted)
    needs: str | None = None  # a module the port needs
    note: str | None = None  # the robustness note expected (None: none)

    def factory(self):
        return self.make_port() if self.needs else self.make_port


P, PAPER = port, {"dialect": "paper"}
ZOO = [
    # the official code as it is written, and correct ports written in other ways
    ZooPort(
        "official GHMC (mmdetection, GHM_Detection)", official_ghmc, verdict="mmdet", needs="torch", note=READS_MASKED
    ),
    ZooPort(
        "official GHMR (mmdetection, GHM_Detection)",
        official_ghmr,
        "r",
        verdict="mmdet",
        needs="torch",
        note=READS_MASKED,
    ),
    ZooPort(
        "official GHMC with mmdetection's class indices",
        lambda: official_ghmc("class_index"),
        verdict="mmdet",
        needs="torch",
        note=READS_MASKED,
    ),
    ZooPort("official style in NumPy", P(Port), verdict="mmdet", note=READS_MASKED),
    ZooPort("paper port", P(Port, **PAPER), verdict="paper", note=READS_MASKED),
    ZooPort("masks before the loss (no note)", P(MasksFirst), verdict="mmdet"),
    ZooPort("sort-based counting", P(SortCounting), verdict="mmdet", note=READS_MASKED),
    ZooPort("float32 per-region sums", P(RegionSums, **PAPER), verdict="paper", note=READS_MASKED),
    ZooPort("float64 throughout", P(Port, dtype=np.float64), verdict="mmdet", note=READS_MASKED),
    ZooPort("masked_in_n (harmless: N cancels in the mean)", P(MaskedInN), verdict="mmdet", note=READS_MASKED),
    ZooPort("no_momentum", P(NoMomentum), verdict="mmdet (momentum not supported by the port)", note=READS_MASKED),
    ZooPort("GHM-R literal ASL1 (official formula)", P(LiteralASL1), "r", verdict="mmdet", note=READS_MASKED),
    ZooPort("GHM-R paper port", P(Port, loss="r", **PAPER), "r", verdict="paper", note=READS_MASKED),
    ZooPort(
        "[bins, N] broadcast (correct values, O(bins N) memory)",
        P(BinsByNBroadcast),
        verdict="mmdet",
        note=READS_MASKED,
    ),
    ZooPort(
        "float32 counts accumulated one by one (wrong only past 2^24)",
        P(Float32SequentialCounts),
        verdict="mmdet",
        note=READS_MASKED,
    ),
    # the port shapes people write
    ZooPort("no label-weight argument", no_label_weight_port, verdict="mmdet"),
    ZooPort("weights only (the kit forms the loss)", weights_only_port, verdict="mmdet"),
    ZooPort("per-entry output (reduction none)", per_entry_port, verdict="mmdet"),
    ZooPort("class indices (N,) with C = background", class_index_port, verdict="mmdet", note=READS_MASKED),
    ZooPort(
        "plain torch function", torch_function_port, verdict="mmdet (momentum not supported by the port)", needs="torch"
    ),
    ZooPort("mmdetection call contract (avg_factor, class indices)", mmdet_module_port, verdict="mmdet", needs="torch"),
    # one fault each
    ZooPort(
        "edge_closed (lo <= g <= hi)", P(EdgeClosed), fails="value", verdict="mmdet except g exactly on a region edge"
    ),
    ZooPort("binary_targets (soft targets read as 0/1)", P(BinaryTargets), fails="value"),
    ZooPort("float16_counts", P(Float16Counts), fails="scale"),
    ZooPort("int16_counts", P(Int16Counts), fails="scale", verdict="mmdet"),
    ZooPort("chunked_histogram (drops the last chunk)", P(ChunkedHistogram), fails="scale"),
    ZooPort("fast_path above 2048 entries", P(FastPath), fails="scale"),
    ZooPort("ema_reset_at_call_5", P(EmaResetAtCall5), fails="ema", verdict="paper (without momentum only)"),
    ZooPort(
        "ema_init_on_empty (an empty first call)",
        P(EmaInitOnEmpty),
        fails="ema_empty",
        verdict="paper (without momentum only)",
    ),
    ZooPort("half_precision_g (g binned in float16)", P(HalfPrecisionG), fails="value"),
    ZooPort("floor(g (M - 1e-4)) regions", P(FloorMinusEpsilon), fails="value"),
    ZooPort("GHM-R floor(g (M - 1e-4)) regions", P(FloorMinusEpsilon, loss="r"), "r", fails="value"),
    ZooPort("drops_saturated", P(DropsSaturated), fails="saturated", verdict="mmdet"),
    ZooPort("saturated_in_region0", P(SaturatedInRegion0), fails="saturated", verdict="mmdet"),
    ZooPort("masked_weighted", P(MaskedWeighted), fails="masked", verdict="mmdet"),
    ZooPort("masked_in_histogram", P(MaskedInHistogram), fails="masked", verdict="mmdet"),
    ZooPort("mask taken from each row's first column", P(MaskFromOneColumn), fails="masked", verdict="mmdet"),
    ZooPort("masked entries counted in the loss's N", P(MaskedInNUnnormalised), fails="masked", verdict="mmdet"),
    ZooPort("gradient leaks into masked entries", P(GradLeaksIntoMasked), fails="masked", verdict="mmdet"),
    ZooPort("unguarded_n (NaN when every entry is masked)", P(UnguardedN), fails="all_masked", verdict="mmdet"),
    ZooPort("weights_not_applied", P(WeightsNotApplied), fails="value", verdict="neither"),
    ZooPort("grad_unweighted", P(GradUnweighted), fails="value", verdict="neither"),
    ZooPort("weight_multiplied", P(WeightMultiplied), fails="weight_mask", verdict="mmdet"),
    ZooPort("ema_clamped", P(EmaClamped), fails="ema", verdict="mmdet (without momentum only)"),
    ZooPort(
        "EMA held by the class (shared by every instance)",
        P(SharedEma),
        fails="independent_instances",
        verdict="mmdet (without momentum only)",
    ),
    ZooPort("ema_from_zero (paper)", P(EmaFromZero), fails="ema", verdict="paper (without momentum only)"),
    ZooPort("paper_ema_start (mmdet)", P(PaperEmaStart), fails="ema", verdict="mmdet (without momentum only)"),
    ZooPort("GHM-R undefined_mu", P(UndefinedMu), "r", fails="value", verdict="neither"),
    ZooPort("GHM-R drops_saturated", P(DropsSaturated, loss="r"), "r", fails="saturated", verdict="mmdet"),
    ZooPort("GHM-R float16_counts", P(Float16Counts, loss="r"), "r", fails="scale"),
    ZooPort(
        "crashes on a masked NaN (gathers by its index)",
        P(CrashesOnMaskedNaN),
        verdict="mmdet",
        note="reads masked values (raises IndexError on NaN/Inf there)",
    ),
]
BY_NAME = {z.name: z for z in ZOO}

# Module-level factories, so the CLI can load them as 'zoo:<name>'.
official_style = port(Port)
masks_first = port(MasksFirst)
paper_port = port(MasksFirst, dialect="paper")
float32_sequential_counts = port(Float32SequentialCounts)
bins_by_n_broadcast = port(BinsByNBroadcast)
drops_saturated = port(DropsSaturated)
edge_closed = port(EdgeClosed)
shared_ema = port(SharedEma)
unguarded_n = port(UnguardedN)
ghm_r_mmdet_port = port(MasksFirst, loss="r")
not_callable = 42
