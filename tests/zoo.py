"""A zoo of GHM ports for proving the conformance kit: one correct port per dialect and ports
with one realistic fault each (from the known faults of public ports, shared/paper.md).

Written independently of ``reference`` in the style of the official code: float32 NumPy, a
loop over regions with edges ``k / M``. Each factory follows the port protocol.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def _per_entry(loss, pred, target, mu, literal_asl1=False):
    x, t = pred.astype(F32), target.astype(F32)
    if loss == "c":
        p = F32(1) / (F32(1) + np.exp(-x))
        ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        return ce, p - t, np.abs(p - t)
    d = x - t
    root = np.sqrt(d * d + F32(mu) * F32(mu))
    asl1 = root - F32(mu) if literal_asl1 else d * d / (root + F32(mu))  # the official code is literal
    return asl1, d / root, np.abs(d) / root


def make_zoo_port(loss: str = "c", dialect: str = "mmdet", fault: str | None = None):
    """A port factory; ``fault`` names the one bug this port has (None: a correct port)."""

    def make_port(*, bins, momentum, mu=0.02, **_):
        if fault == "no_momentum" and momentum:
            raise NotImplementedError("this port has no momentum")
        acc = np.zeros(bins, F32)
        seen = [False]

        def step(pred, target, label_weight):
            if fault == "undefined_mu" and loss == "r":
                raise NameError("name 'mu' is not defined")
            per, dper, g = _per_entry(loss, pred, target, mu, literal_asl1=fault == "literal_asl1")
            valid = label_weight > 0
            hist_valid = np.ones_like(valid) if fault == "masked_in_histogram" else valid
            tot = max(float(label_weight.size if fault == "masked_in_n" else valid.sum()), 1.0)
            edges = np.arange(bins + 1, dtype=F32) / F32(bins)
            if fault != "drops_saturated":
                edges[-1] += F32(1e-6) if loss == "c" else F32(1e3)
            if fault == "saturated_in_region0":
                g = np.where(g >= 1, F32(0), g)
            weights = np.zeros_like(per)
            counts = np.zeros(bins, F32)
            n = 0
            for i in range(bins):
                inds = (g >= edges[i]) & (g < edges[i + 1]) & hist_valid
                counts[i] = inds.sum()
                if counts[i] > 0:
                    n += 1
            if momentum and dialect == "mmdet":
                start = np.zeros(bins, F32) if fault != "paper_ema_start" else counts
                base = acc if seen[0] else start
                upd = np.where(counts > 0, F32(momentum) * base + F32(1 - momentum) * counts, base)
                if valid.any():
                    acc[:] = upd
                    seen[0] = True
                dens = upd
            elif momentum:
                if fault == "ema_from_zero":
                    base = acc
                else:
                    base = acc if seen[0] else counts
                upd = F32(momentum) * base + F32(1 - momentum) * counts
                if valid.any():
                    acc[:] = upd
                    seen[0] = True
                dens = upd
            else:
                dens = counts
            for i in range(bins):
                inds = (g >= edges[i]) & (g < edges[i + 1])
                if fault != "masked_weighted":
                    inds &= valid
                if counts[i] > 0:
                    weights[inds] = tot / dens[i]
            if dialect == "paper":
                weights = weights / bins
            elif fault == "unguarded_n":
                with np.errstate(invalid="ignore", divide="ignore"):
                    weights = weights / F32(n)  # NaN when nothing is valid
            elif n > 0:
                weights = weights / n
            if fault == "ema_clamped" and momentum:
                weights = np.minimum(weights, F32(tot / max(valid.sum(), 1)))  # rare regions never up-weighted
            if fault == "weight_multiplied":
                weights = weights * label_weight
            if fault == "weights_not_applied":
                weights = np.where(valid, F32(1), F32(0))
            kept = np.ones_like(valid) if fault == "masked_weighted" else valid
            loss_value = float(np.sum(weights * np.where(kept, per, 0)) / tot)
            gw = weights if fault != "grad_unweighted" else np.where(valid, F32(1), F32(0))
            grad = np.where(valid, gw * dper, 0) / tot
            return loss_value, grad

        return step

    return make_port


# name -> (factory, property expected to fail, verdict expected)
FAULTY = {
    "divide_by_nonempty (a correct mmdet port)": (make_zoo_port("c", "mmdet"), None, "mmdet"),
    "paper port": (make_zoo_port("c", "paper"), None, "paper"),
    "drops_saturated": (make_zoo_port("c", "mmdet", "drops_saturated"), "saturated", None),
    "saturated_in_region0": (make_zoo_port("c", "mmdet", "saturated_in_region0"), "saturated", None),
    # tot cancels in the official code's mean loss: counting masked entries in it is harmless
    "masked_in_n (harmless)": (make_zoo_port("c", "mmdet", "masked_in_n"), None, "mmdet"),
    "masked_weighted": (make_zoo_port("c", "mmdet", "masked_weighted"), "masked", None),
    "masked_in_histogram": (make_zoo_port("c", "mmdet", "masked_in_histogram"), "masked", None),
    "unguarded_n": (make_zoo_port("c", "mmdet", "unguarded_n"), "all_masked", "mmdet (without momentum only)"),
    "weights_not_applied": (make_zoo_port("c", "mmdet", "weights_not_applied"), "value", "neither"),
    "grad_unweighted": (make_zoo_port("c", "mmdet", "grad_unweighted"), "finite_diff", "neither"),
    "weight_multiplied": (make_zoo_port("c", "mmdet", "weight_multiplied"), "weight_mask", None),
    "ema_clamped": (make_zoo_port("c", "mmdet", "ema_clamped"), "ema", "mmdet (without momentum only)"),
    "ema_from_zero (paper)": (make_zoo_port("c", "paper", "ema_from_zero"), "ema", "paper (without momentum only)"),
    "paper_ema_start (mmdet)": (make_zoo_port("c", "mmdet", "paper_ema_start"), "ema", "mmdet (without momentum only)"),
    "no_momentum": (make_zoo_port("c", "mmdet", "no_momentum"), None, "mmdet (momentum not supported by the port)"),
    # the official GHM-R evaluates sqrt(d^2 + mu^2) - mu literally: float32 cancellation, not a bug
    "GHM-R literal ASL1 (official formula)": (make_zoo_port("r", "mmdet", "literal_asl1"), None, "mmdet"),
    "GHM-R undefined_mu": (make_zoo_port("r", "mmdet", "undefined_mu"), "value", "neither"),
    "GHM-R drops_saturated": (make_zoo_port("r", "mmdet", "drops_saturated"), "saturated", None),
}


# Module-level factories, so the CLI can load them as 'zoo:<name>'.
mmdet_port = make_zoo_port("c", "mmdet")
paper_port = make_zoo_port("c", "paper")
drops_saturated = make_zoo_port("c", "mmdet", "drops_saturated")
ghm_r_mmdet_port = make_zoo_port("r", "mmdet")
not_callable = 42
