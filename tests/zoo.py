"""A zoo of GHM ports for proving the conformance kit: correct ports of both dialects written in
different ways, the port shapes people write (no label weight, plain functions, weights only,
per-entry output, class indices), and ports with one realistic fault each (the known faults of
public ports, shared/paper.md, and plausible porting bugs).

Written independently of ``reference`` in the style of the official code: float32 NumPy, edges
``k / M``, a loop over regions. Each factory follows the port protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ghm_conformance.protocol import from_weights, with_class_index_targets

F32 = np.float32


def _per_entry(loss, pred, target, mu, *, literal_asl1=False, binary_targets=False, dtype=F32):
    x, t = pred.astype(dtype), target.astype(dtype)
    if loss == "c":
        p = dtype(1) / (dtype(1) + np.exp(-x))
        ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        g = np.where(t >= 0.5, 1 - p, p) if binary_targets else np.abs(p - t)  # the bug: soft t read as 0/1
        return ce, p - t, g
    d = x - t
    root = np.sqrt(d * d + dtype(mu) * dtype(mu))
    asl1 = root - dtype(mu) if literal_asl1 else d * d / (root + dtype(mu))  # the official code is literal
    return asl1, d / root, np.abs(d) / root


COUNT_DTYPES = {"float16_counts": np.float16, "int16_counts": np.int16}


def make_zoo_port(loss: str = "c", dialect: str = "mmdet", fault: str | None = None, output: str = "loss"):
    """A port factory; ``fault`` names the one bug this port has (None: a correct port).
    ``output``: "loss" ((loss, grad)), "weights" (beta only) or "per_entry" (beta_i L_i)."""

    def make_port(*, bins, momentum, mu=0.02, **_):
        if fault == "no_momentum" and momentum:
            raise NotImplementedError("this port has no momentum")
        dtype = np.float64 if fault == "float64" else F32
        acc = np.zeros(bins, dtype)
        seen = [False]
        calls = [0]

        def step(pred, target, label_weight):
            if fault == "undefined_mu" and loss == "r":
                raise NameError("name 'mu' is not defined")
            calls[0] += 1
            with np.errstate(all="ignore"):  # the kit puts NaN and Inf in masked entries
                per, dper, g = _per_entry(loss, pred, target, mu, literal_asl1=fault == "literal_asl1",
                                          binary_targets=fault == "binary_targets", dtype=dtype)
            if fault == "half_precision_g":
                g = g.astype(np.float16).astype(F32)
            valid = label_weight > 0
            if fault == "crashes_on_masked_nan" and np.isnan(np.where(valid, 0, pred)).any():
                # as a TF port gathering beta by an index cast from a masked NaN g does
                raise IndexError("indices[1] = -2147483648 is not in [0, bins)")
            hist_valid = np.ones_like(valid) if fault == "masked_in_histogram" else valid
            if fault == "chunked_histogram" and g.size > 4096:  # the last, partial chunk is dropped
                hist_valid = hist_valid & (np.arange(g.size).reshape(g.shape) < g.size - g.size % 4096)
            tot = max(float(label_weight.size if fault == "masked_in_n" else valid.sum()), 1.0)
            edges = np.arange(bins + 1, dtype=dtype) / dtype(bins)
            if fault != "drops_saturated":
                edges[-1] += dtype(1e-6) if loss == "c" else dtype(1e3)
            if fault == "saturated_in_region0":
                g = np.where(g >= 1, dtype(0), g)
            upper_closed = fault == "edge_closed"  # lo <= g <= hi: an entry on an edge is in two regions
            weights = np.zeros_like(per)
            counts = np.zeros(bins, COUNT_DTYPES.get(fault, dtype))
            ind_sorted = None
            if fault == "sort_counting":  # counts by sorting the region indices, not by masks
                ind = np.minimum(np.floor(g * dtype(bins)).astype(np.int64), bins - 1)
                ind_sorted = np.sort(ind[hist_valid])
            if fault == "bins_by_n_broadcast":  # correct, in O(bins x N) memory: a one-hot of every entry
                onehot = (g.reshape(1, -1) >= edges[:-1, None]) & (g.reshape(1, -1) < edges[1:, None])
                counts[:] = (onehot & hist_valid.reshape(1, -1)).sum(axis=1)
            for i in range(bins):
                inside = (g >= edges[i]) & ((g <= edges[i + 1]) if upper_closed else (g < edges[i + 1]))
                if fault == "bins_by_n_broadcast":
                    continue
                if ind_sorted is not None:
                    counts[i] = np.searchsorted(ind_sorted, i, "right") - np.searchsorted(ind_sorted, i, "left")
                elif fault == "float32_sequential_counts":  # one float32 increment per entry: stalls at 2^24
                    counts[i] = np.cumsum((inside & hist_valid).ravel(), dtype=F32)[-1] if g.size else 0
                else:
                    counts[i] = (inside & hist_valid).sum()
            n = int(np.count_nonzero(counts))
            if momentum and dialect == "mmdet":
                start = np.zeros(bins, dtype) if fault != "paper_ema_start" else counts.astype(dtype)
                base = acc if seen[0] else start
                upd = np.where(counts > 0, dtype(momentum) * base + dtype(1 - momentum) * counts, base)
                if valid.any():
                    acc[:] = upd
                    seen[0] = True
                dens = upd
            elif momentum:
                if fault == "ema_init_on_empty" and not valid.any():
                    seen[0] = True  # the bug: an empty first call 'initialises' the state with zeros
                base = acc if seen[0] or fault == "ema_from_zero" else counts
                upd = dtype(momentum) * base + dtype(1 - momentum) * counts
                if valid.any():
                    acc[:] = upd
                    seen[0] = True
                dens = upd
                if fault == "ema_reset_at_call_5" and calls[0] == 5:
                    dens = counts.astype(dtype)  # the bug: the 5th call forgets the history
            else:
                dens = counts
            for i in range(bins):
                inside = (g >= edges[i]) & ((g <= edges[i + 1]) if upper_closed else (g < edges[i + 1]))
                if fault != "masked_weighted":
                    inside &= valid
                if counts[i] > 0:
                    weights[inside] = tot / dens[i]
            fast_path = fault == "fast_path" and valid.sum() > 2048  # the bug: a 'fast' branch normalises by M
            if dialect == "paper" or fast_path:
                weights = weights / bins
            elif fault == "unguarded_n":
                with np.errstate(invalid="ignore", divide="ignore"):
                    weights = weights / dtype(n)  # NaN when nothing is valid
            elif n > 0:
                weights = weights / n
            if fault == "ema_clamped" and momentum:
                weights = np.minimum(weights, dtype(tot / max(valid.sum(), 1)))  # rare regions never up-weighted
            if fault == "weight_multiplied":
                weights = weights * label_weight
            if fault == "weights_not_applied":
                weights = np.where(valid, dtype(1), dtype(0))
            kept = np.ones_like(valid) if fault in ("masked_weighted", "nan_in_masked") else valid
            contributions = weights * np.where(kept, per, 0)  # nan_in_masked: weight 0 times a masked NaN
            if fault == "float32_region_sums":  # the loss summed region by region (NumPy: pairwise)
                ind = np.minimum(np.floor(g * F32(bins)).astype(np.int64), bins - 1)
                loss_value = float(sum(np.sum(contributions[ind == j], dtype=F32) for j in range(bins)) / tot)
            else:
                loss_value = float(np.sum(contributions) / tot)
            gw = weights if fault != "grad_unweighted" else np.where(valid, dtype(1), dtype(0))
            grad = np.where(valid, gw * dper, 0) / tot
            if output == "weights":
                return np.where(valid, weights, 0)
            if output == "per_entry":
                return np.where(valid, weights * per, 0)
            return loss_value, grad

        return step

    return make_port


# ---------------------------------------------------------------- the port shapes people write

def no_label_weight_port(*, bins, momentum, **hyper):
    """A correct mmdet GHM-C port whose step takes (pred, target) only."""
    step = make_zoo_port("c", "mmdet")(bins=bins, momentum=momentum, **hyper)
    return lambda pred, target: step(pred, target, np.ones_like(pred))


weights_only_port = from_weights(make_zoo_port("c", "mmdet", output="weights"), "c")
per_entry_port = make_zoo_port("c", "mmdet", output="per_entry")


def _class_index_port(*, bins, momentum, **hyper):
    """Takes mmdetection labels (N,) with C = background and per-anchor weights (N,)."""
    step = make_zoo_port("c", "mmdet")(bins=bins, momentum=momentum, **hyper)

    def run(pred, labels, weights):
        n_classes = pred.shape[-1]
        onehot = (labels[:, None] == np.arange(n_classes)).astype(F32)
        return step(pred, onehot, np.repeat(weights[:, None], n_classes, axis=1).astype(F32))

    return run


class_index_port = with_class_index_targets(_class_index_port)


def torch_function_port():
    """A plain torch function, official-style mmdet GHM-C without momentum."""
    from ghm_conformance import from_torch_function
    import torch

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

    return from_torch_module(lambda **kw: GHMCLoss(dialect="mmdet", **kw), targets="class_index",
                             call_kwargs={"avg_factor": 7.0, "reduction_override": None})


# ---------------------------------------------------------------- the zoo and what the kit must say of each

@dataclass(frozen=True)
class ZooPort:
    name: str
    make_port: object  # a port factory, or a zero-argument function returning one (optional deps)
    loss_kind: str = "c"
    fails: str | None = None  # the property the kit must name, None for a correct port
    verdict: str | None = None  # the dialect label expected (None: not asserted)
    needs: str | None = None  # a module the port needs

    def factory(self):
        return self.make_port() if self.needs else self.make_port


Z = make_zoo_port
ZOO = [
    # correct ports, written in different ways
    ZooPort("mmdet port (official style)", Z("c", "mmdet"), verdict="mmdet"),
    ZooPort("paper port", Z("c", "paper"), verdict="paper"),
    ZooPort("sort-based counting", Z("c", "mmdet", "sort_counting"), verdict="mmdet"),
    ZooPort("float32 per-region sums", Z("c", "paper", "float32_region_sums"), verdict="paper"),
    ZooPort("float64 throughout", Z("c", "mmdet", "float64"), verdict="mmdet"),
    ZooPort("masked_in_n (harmless: N cancels in the mean)", Z("c", "mmdet", "masked_in_n"), verdict="mmdet"),
    ZooPort("no_momentum", Z("c", "mmdet", "no_momentum"), verdict="mmdet (momentum not supported by the port)"),
    ZooPort("GHM-R literal ASL1 (official formula)", Z("r", "mmdet", "literal_asl1"), "r", verdict="mmdet"),
    ZooPort("GHM-R paper port", Z("r", "paper"), "r", verdict="paper"),
    # the port shapes people write
    ZooPort("no label-weight argument", no_label_weight_port, verdict="mmdet"),
    ZooPort("weights only (the kit forms the loss)", weights_only_port, verdict="mmdet"),
    ZooPort("per-entry output (reduction none)", per_entry_port, verdict="mmdet"),
    ZooPort("class indices (N,) with C = background", class_index_port, verdict="mmdet"),
    ZooPort("plain torch function", torch_function_port, verdict="mmdet (momentum not supported by the port)",
            needs="torch"),
    ZooPort("mmdetection call contract (avg_factor, class indices)", mmdet_module_port, verdict="mmdet",
            needs="torch"),
    # one fault each
    ZooPort("edge_closed (lo <= g <= hi)", Z("c", "mmdet", "edge_closed"), fails="value", verdict="neither"),
    ZooPort("binary_targets (soft targets read as 0/1)", Z("c", "mmdet", "binary_targets"), fails="value"),
    ZooPort("float16_counts", Z("c", "mmdet", "float16_counts"), fails="scale"),
    ZooPort("int16_counts", Z("c", "mmdet", "int16_counts"), fails="scale", verdict="mmdet"),
    ZooPort("chunked_histogram (drops the last chunk)", Z("c", "mmdet", "chunked_histogram"), fails="scale"),
    ZooPort("fast_path above 2048 entries", Z("c", "mmdet", "fast_path"), fails="scale"),
    ZooPort("ema_reset_at_call_5", Z("c", "paper", "ema_reset_at_call_5"), fails="ema",
            verdict="paper (without momentum only)"),
    ZooPort("ema_init_on_empty (an empty first call)", Z("c", "paper", "ema_init_on_empty"), fails="ema_empty",
            verdict="paper (without momentum only)"),
    ZooPort("half_precision_g (g binned in float16)", Z("c", "mmdet", "half_precision_g"), fails="value"),
    ZooPort("drops_saturated", Z("c", "mmdet", "drops_saturated"), fails="saturated", verdict="mmdet"),
    ZooPort("saturated_in_region0", Z("c", "mmdet", "saturated_in_region0"), fails="saturated", verdict="mmdet"),
    ZooPort("masked_weighted", Z("c", "mmdet", "masked_weighted"), fails="masked", verdict="mmdet"),
    ZooPort("masked_in_histogram", Z("c", "mmdet", "masked_in_histogram"), fails="masked", verdict="mmdet"),
    ZooPort("unguarded_n (NaN when every entry is masked)", Z("c", "mmdet", "unguarded_n"), fails="all_masked",
            verdict="mmdet"),
    ZooPort("weights_not_applied", Z("c", "mmdet", "weights_not_applied"), fails="value", verdict="neither"),
    ZooPort("grad_unweighted", Z("c", "mmdet", "grad_unweighted"), fails="value", verdict="neither"),
    ZooPort("weight_multiplied", Z("c", "mmdet", "weight_multiplied"), fails="weight_mask", verdict="mmdet"),
    ZooPort("ema_clamped", Z("c", "mmdet", "ema_clamped"), fails="ema", verdict="mmdet (without momentum only)"),
    ZooPort("ema_from_zero (paper)", Z("c", "paper", "ema_from_zero"), fails="ema",
            verdict="paper (without momentum only)"),
    ZooPort("paper_ema_start (mmdet)", Z("c", "mmdet", "paper_ema_start"), fails="ema",
            verdict="mmdet (without momentum only)"),
    ZooPort("GHM-R undefined_mu", Z("r", "mmdet", "undefined_mu"), "r", fails="value", verdict="neither"),
    ZooPort("GHM-R drops_saturated", Z("r", "mmdet", "drops_saturated"), "r", fails="saturated", verdict="mmdet"),
    ZooPort("GHM-R float16_counts", Z("r", "mmdet", "float16_counts"), "r", fails="scale"),
    ZooPort("[bins, N] broadcast (correct values, O(bins N) memory)", Z("c", "mmdet", "bins_by_n_broadcast"),
            verdict="mmdet"),
    ZooPort("float32 counts accumulated one by one (wrong only past 2^24)", Z("c", "mmdet", "float32_sequential_counts"),
            verdict="mmdet"),
    ZooPort("masked NaN reaches the sum (0 * NaN)", Z("c", "mmdet", "nan_in_masked"), fails="masked", verdict="mmdet"),
    ZooPort("crashes on a masked NaN (gathers by its index)", Z("c", "mmdet", "crashes_on_masked_nan"), fails="masked",
            verdict="mmdet"),
]
BY_NAME = {z.name: z for z in ZOO}

# Module-level factories, so the CLI can load them as 'zoo:<name>'.
float32_sequential_counts = make_zoo_port("c", "mmdet", "float32_sequential_counts")
bins_by_n_broadcast = make_zoo_port("c", "mmdet", "bins_by_n_broadcast")
mmdet_port = make_zoo_port("c", "mmdet")
paper_port = make_zoo_port("c", "paper")
drops_saturated = make_zoo_port("c", "mmdet", "drops_saturated")
edge_closed = make_zoo_port("c", "mmdet", "edge_closed")
ghm_r_mmdet_port = make_zoo_port("r", "mmdet")
not_callable = 42
