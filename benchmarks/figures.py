"""The paper's figures regenerated from this project's code: the gradient-norm distribution of a
detector trained with CE and what CE, focal loss and GHM-C make of it (Figure 1), beta in both
dialects with and without the EMA, and GHM-R's gr. The detector is the one of
``benchmarks/detection.py``, trained with CE + smooth L1 in the released setting (seed 0); the
training comparison itself is ``python -m benchmarks.comparison``.

    python -m benchmarks.figures            # docs/figures/{gradient_norm,beta,regression}.png (~8 min on 2 cores)
    python -m benchmarks.figures --tiny     # the same at a toy size (the smoke test)

beta is the reference's (``reference.harmonize``, unit regions, Eqs. 9-13).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import reference
from reference import equations as eq

from . import detection as det
from .plotting import pyplot

OUT = Path(__file__).parent.parent / "docs" / "figures"


def _beta_of(g: np.ndarray, bins: int, dialect: str = "paper") -> np.ndarray:
    beta, _ = reference.harmonize(eq.region_index(g, bins), bins=bins, momentum=0.0, state=None, dialect=dialect)
    return beta


def _focal_grad_norm(g: np.ndarray, alpha: float = 0.25, gamma: float = 2.0) -> np.ndarray:
    """|d FL / d x| of a negative (t = 0, p = g), by autograd, per entry."""
    import torch

    p = torch.tensor(np.clip(g, 1e-7, 1 - 1e-7), dtype=torch.float64)
    x = torch.log(p / (1 - p)).requires_grad_(True)
    pr = x.sigmoid()
    fl = -(1 - alpha) * pr**gamma * torch.log1p(-pr)
    (grad,) = torch.autograd.grad(fl.sum(), x)
    return grad.abs().numpy()


def gradient_norm_figures(plt, g: np.ndarray, out: Path, bins: int = 30) -> list[str]:
    """Figure 1 of the paper: the distribution of g of a CE-trained model, the re-weighted
    gradient norm of CE, focal loss and GHM-C against g, and each region's total contribution."""
    edges = np.linspace(0, 1, bins + 1)
    counts, _ = np.histogram(g, edges)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].bar(centres, np.maximum(counts, 0.5), width=1 / bins, color="tab:gray")
    axes[0].set(
        yscale="log",
        xlabel="gradient norm g",
        ylabel="number of examples (log)",
        title="g of a model trained with CE (test set)",
    )
    beta = _beta_of(g, bins)
    grid = np.linspace(0.005, 0.995, 199)
    axes[1].plot(grid, grid, label="CE")
    axes[1].plot(grid, _focal_grad_norm(grid), label="focal loss (gamma 2)")
    region = np.minimum((g * bins).astype(int), bins - 1)
    occupied = np.unique(region)  # beta exists only where the batch has examples
    region_beta = np.array([beta[region == j][0] for j in occupied])
    axes[1].plot(centres[occupied], centres[occupied] * region_beta, "o", label="GHM-C (paper, M=30), per region")
    axes[1].set(
        yscale="log",
        xlabel="original gradient norm g",
        ylabel="re-weighted gradient norm (log)",
        title="re-weighted gradient norm",
    )
    axes[1].legend()
    for name, fn in (("CE", lambda v: v), ("focal loss (gamma 2)", _focal_grad_norm), ("GHM-C (paper, M=30)", None)):
        per = g * beta if fn is None else fn(g)
        total = np.bincount(region, weights=per, minlength=bins)
        axes[2].plot(centres[occupied], (total / total.sum())[occupied], marker="o", label=name)
    axes[2].set(
        yscale="log",
        xlabel="gradient norm g",
        ylabel="share of the total gradient (log)",
        title="total gradient contribution per region",
    )
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "gradient_norm.png", dpi=100)
    plt.close(fig)
    return ["gradient_norm.png"]


def regression_figures(plt, d: np.ndarray, out: Path, mu: float = 0.02, bins: int = 10) -> list[str]:
    """GHM-R: the distribution of gr of a smooth-L1-trained regressor's positives, and the
    re-weighted gradient norm of SL1, ASL1 and GHM-R against |d|."""
    gr = eq.asl1_gradient_norm(d, mu)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    counts, edges = np.histogram(gr, np.linspace(0, 1, bins + 1))
    axes[0].bar((edges[:-1] + edges[1:]) / 2, np.maximum(counts, 0.5), width=1 / bins, color="tab:gray")
    axes[0].set(
        yscale="log",
        xlabel="gradient norm gr",
        ylabel="number of box coordinates (log)",
        title=f"gr of a smooth-L1 regressor's positives (mu={mu})",
    )
    beta = _beta_of(gr, bins)
    grid = np.logspace(-4, 1, 200)
    grid_gr = eq.asl1_gradient_norm(grid, mu)
    order = np.argsort(gr)
    grid_beta = np.interp(grid_gr, gr[order], beta[order])
    axes[1].plot(grid, np.minimum(grid / (1 / 9), 1.0), label="smooth L1 (beta 1/9)")
    axes[1].plot(grid, grid_gr, label=f"ASL1 (mu {mu})")
    axes[1].plot(grid, grid_gr * grid_beta, label=f"GHM-R (paper, M={bins})")
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="|d|",
        ylabel="re-weighted gradient norm (log)",
        title="re-weighted gradient norm of box regression",
    )
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "regression.png", dpi=100)
    plt.close(fig)
    return ["regression.png"]


def beta_figures(plt, batches: list[np.ndarray], out: Path, bins: int = 30) -> list[str]:
    """beta against g on one batch: both dialects, without and with the EMA (over the batches
    before it); and the exact density of Eq. (4) beside the unit-region density of Eq. (9)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    g = batches[-1]
    ind = eq.region_index(g, bins)
    occupied = np.unique(ind)
    first = np.array([np.flatnonzero(ind == j)[0] for j in occupied])  # one entry per occupied region
    centres = (occupied + 0.5) / bins
    for dialect, colour in (("paper", "tab:blue"), ("mmdet", "tab:orange")):
        axes[0].plot(centres, _beta_of(g, bins, dialect)[first], "o", color=colour, label=f"{dialect}, no EMA")
        state = None
        for b in batches:
            beta, state = reference.harmonize(
                eq.region_index(b, bins), bins=bins, momentum=0.75, state=state, dialect=dialect
            )
        axes[0].plot(centres, beta[first], "x", color=colour, label=f"{dialect}, EMA 0.75 over {len(batches)} batches")
    axes[0].set(yscale="log", xlabel="g", ylabel="beta (log)", title=f"harmonizing weight, M={bins}")
    axes[0].legend(fontsize=8)
    sample = np.sort(g[:: max(1, len(g) // 1500)])
    exact = eq.gradient_density(sample, 1.0 / bins)
    approx = eq.approx_gradient_density(
        eq.region_counts(eq.region_index(sample, bins), bins)[eq.region_index(sample, bins)], bins
    )
    axes[1].plot(sample, exact, ".", markersize=3, label="exact GD, Eq. (4)")
    axes[1].plot(sample, approx, ".", markersize=3, label="unit regions, Eq. (9)")
    axes[1].set(
        yscale="log",
        xlabel="g",
        ylabel="gradient density (log)",
        title=f"exact vs unit-region density ({len(sample)} examples)",
    )
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "beta.png", dpi=100)
    plt.close(fig)
    return ["beta.png"]


def _statistics(model, split, images: int = 64, batches: int = 5, batch: int = 16):
    """From a CE + smooth L1 detector: g of the non-ignored (anchor, class) entries of test images;
    g of a few training batches (for the EMA figure); the box residuals of the test positives."""
    import torch

    def heads(x):
        outputs = model(x)
        return torch.cat([c for c, _ in outputs], 1), torch.cat([b for _, b in outputs], 1)

    model.eval()
    with torch.no_grad():
        te = split["test"]
        cls, box = heads(te.images[:images])
        valid = te.cls_weight[:images].bool()
        g = (cls.sigmoid() - te.cls_target[:images]).abs()[valid].reshape(-1).double().numpy()
        d = (box - te.box_target[:images])[te.positive[:images].bool()].reshape(-1).double().numpy()
        tr = split["train"]
        gs = []
        for i in range(min(batches, len(tr.images) // batch)):
            sl = slice(i * batch, (i + 1) * batch)
            c, _ = heads(tr.images[sl])
            gs.append((c.sigmoid() - tr.cls_target[sl]).abs()[tr.cls_weight[sl].bool()].reshape(-1).double().numpy())
    return g, gs, d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a toy size: the smoke test")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    plt = pyplot()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = det.QUICK if args.tiny else det.FULL
    split = det.splits(sizes)
    setting = det.Setting(**sizes["setting"])
    run = det.train(
        "CE",
        "smooth L1",
        split,
        seed=0,
        setting=setting,
        test=False,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    g, batches, d = _statistics(run["model"], split)
    written = gradient_norm_figures(plt, g, out) + beta_figures(plt, batches, out) + regression_figures(plt, d, out)
    print("wrote " + ", ".join(str(out / w) for w in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
