"""The paper's figures regenerated from this project's code, and CE vs focal loss vs GHM-C (smooth
L1 vs GHM-R) on a dense-detection task anyone can rerun (``benchmarks/detection.py``).

    python -m benchmarks.figures            # docs/figures/*.png, results.md and runs.json (about 48 min on 2 cores)
    python -m benchmarks.figures --tiny     # the same at a toy size (the smoke test)

Six pairs of losses train the same detector: CE, focal loss, GHM-C (paper, mmdet) with smooth
L1, and GHM-C with GHM-R in each dialect (the paper's Table: GHM-R is added to GHM-C). Each pair
gets its learning rate by validation AP on seed 0 over {1e-3, 3.2e-3, 1e-2}, the grid growing
by a factor 3.2 on a side while the best rate sits at that edge; each run drops its rate tenfold
when the validation AP has not improved for 2 epochs and stops at the next such plateau (at
most 30 epochs), scored by the test AP of its best validation epoch; seeds 1 and 2 repeat the
chosen rate. AP is pycocotools'. The figures
of g, beta and gr come from the CE + smooth L1 detector (seed 0) and use the reference's beta
(``reference.harmonize``, unit regions, Eqs. 9-13).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import reference
from reference import equations as eq

from . import detection as det

OUT = Path(__file__).parent.parent / "docs" / "figures"
# images per split (and the seed that renders it), seeds per loss, the learning-rate grid (k of 10^(k/2))
FULL = {"splits": {"train": (512, 0), "val": (192, 1), "test": (256, 2)}, "seeds": 3, "grid": det.GRID,
        "max_epochs": 30, "patience": 2}
TINY = {"splits": {"train": (32, 0), "val": (16, 1), "test": (16, 2)}, "seeds": 1, "grid": (-5,),
        "max_epochs": 1, "patience": 1}


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("the figures need matplotlib: pip install -e '.[plot]'")
    return plt


def _beta_of(g: np.ndarray, bins: int, dialect: str = "paper") -> np.ndarray:
    beta, _ = reference.harmonize(eq.region_index(g, bins), bins=bins, momentum=0.0, state=None, dialect=dialect)
    return beta


def _focal_grad_norm(g: np.ndarray, alpha: float = 0.25, gamma: float = 2.0) -> np.ndarray:
    """|d FL / d x| of a negative (t = 0, p = g), by autograd, per entry."""
    import torch

    p = torch.tensor(np.clip(g, 1e-7, 1 - 1e-7), dtype=torch.float64)
    x = torch.log(p / (1 - p)).requires_grad_(True)
    pr = x.sigmoid()
    fl = -(1 - alpha) * pr ** gamma * torch.log1p(-pr)
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
    axes[0].set(yscale="log", xlabel="gradient norm g", ylabel="number of examples (log)",
                title="g of a model trained with CE (test set)")
    beta = _beta_of(g, bins)
    grid = np.linspace(0.005, 0.995, 199)
    axes[1].plot(grid, grid, label="CE")
    axes[1].plot(grid, _focal_grad_norm(grid), label="focal loss (gamma 2)")
    region = np.minimum((g * bins).astype(int), bins - 1)
    occupied = np.unique(region)  # beta exists only where the batch has examples
    region_beta = np.array([beta[region == j][0] for j in occupied])
    axes[1].plot(centres[occupied], centres[occupied] * region_beta, "o", label="GHM-C (paper, M=30), per region")
    axes[1].set(yscale="log", xlabel="original gradient norm g", ylabel="re-weighted gradient norm (log)",
                title="re-weighted gradient norm")
    axes[1].legend()
    for name, fn in (("CE", lambda v: v), ("focal loss (gamma 2)", _focal_grad_norm), ("GHM-C (paper, M=30)", None)):
        per = g * beta if fn is None else fn(g)
        total = np.bincount(region, weights=per, minlength=bins)
        axes[2].plot(centres[occupied], (total / total.sum())[occupied], marker="o", label=name)
    axes[2].set(yscale="log", xlabel="gradient norm g", ylabel="share of the total gradient (log)",
                title="total gradient contribution per region")
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
    axes[0].set(yscale="log", xlabel="gradient norm gr", ylabel="number of box coordinates (log)",
                title=f"gr of a smooth-L1 regressor's positives (mu={mu})")
    beta = _beta_of(gr, bins)
    grid = np.logspace(-4, 1, 200)
    grid_gr = eq.asl1_gradient_norm(grid, mu)
    order = np.argsort(gr)
    grid_beta = np.interp(grid_gr, gr[order], beta[order])
    axes[1].plot(grid, np.minimum(grid / (1 / 9), 1.0), label="smooth L1 (beta 1/9)")
    axes[1].plot(grid, grid_gr, label=f"ASL1 (mu {mu})")
    axes[1].plot(grid, grid_gr * grid_beta, label=f"GHM-R (paper, M={bins})")
    axes[1].set(xscale="log", yscale="log", xlabel="|d|", ylabel="re-weighted gradient norm (log)",
                title="re-weighted gradient norm of box regression")
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
            beta, state = reference.harmonize(eq.region_index(b, bins), bins=bins, momentum=0.75, state=state,
                                              dialect=dialect)
        axes[0].plot(centres, beta[first], "x", color=colour, label=f"{dialect}, EMA 0.75 over {len(batches)} batches")
    axes[0].set(yscale="log", xlabel="g", ylabel="beta (log)", title=f"harmonizing weight, M={bins}")
    axes[0].legend(fontsize=8)
    sample = np.sort(g[:: max(1, len(g) // 1500)])
    exact = eq.gradient_density(sample, 1.0 / bins)
    approx = eq.approx_gradient_density(eq.region_counts(eq.region_index(sample, bins), bins)[
        eq.region_index(sample, bins)], bins)
    axes[1].plot(sample, exact, ".", markersize=3, label="exact GD, Eq. (4)")
    axes[1].plot(sample, approx, ".", markersize=3, label="unit regions, Eq. (9)")
    axes[1].set(yscale="log", xlabel="g", ylabel="gradient density (log)",
                title=f"exact vs unit-region density ({len(sample)} examples)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "beta.png", dpi=100)
    plt.close(fig)
    return ["beta.png"]


def comparison(plt, out: Path, outcomes: list) -> tuple[list[str], str]:
    """The training curves (validation AP by epoch, each seed) and the table of test APs."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, o in zip(colours, outcomes):
        for i, r in enumerate(o.runs):
            ax.plot(np.arange(1, len(r["curve"]) + 1), r["curve"], color=colour, alpha=0.8,
                    label=" + ".join(o.config) if i == 0 else None)
    ax.set(xlabel="epoch", ylabel="validation AP (COCO, IoU 0.5:0.95)",
           title=f"the detection task, each loss at its learning rate, {len(outcomes[0].runs)} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    plt.close(fig)
    rows = ["| classification + box loss | learning rate (validation AP of each rate tried) | epochs (best "
            "validation) | test AP | test AP50 |", "| --- | --- | --- | --- | --- |"]
    for o in outcomes:
        ap = np.array([r["test_ap"] for r in o.runs])
        ap50 = np.array([r["test_ap50"] for r in o.runs])
        tried = ", ".join(f"{'**' if k == o.chosen else ''}{det.rate(k):.2g}: {v:.3f}{'**' if k == o.chosen else ''}"
                          for k, v in o.grid.items())
        edge = " (best at the grid's edge)" if o.at_edge else ""
        rows.append(f"| {' + '.join(o.config)} | {tried}{edge} | {', '.join(str(r['epoch']) for r in o.runs)} | "
                    f"{ap.mean():.3f} +- {ap.std():.3f} | {ap50.mean():.3f} +- {ap50.std():.3f} |")
    return ["training.png"], "\n".join(rows)


def _statistics(model, split, images: int = 64, batches: int = 5, batch: int = 16):
    """From a CE + smooth L1 detector: g of the non-ignored (anchor, class) entries of test images;
    g of a few training batches (for the EMA figure); the box residuals of the test positives."""
    import torch

    model.eval()
    with torch.no_grad():
        te = split["test"]
        cls, box = model(te.images[:images])
        valid = te.cls_weight[:images].bool()
        g = (cls.sigmoid() - te.cls_target[:images]).abs()[valid].reshape(-1).double().numpy()
        d = (box - te.box_target[:images])[te.positive[:images].bool()].reshape(-1).double().numpy()
        tr = split["train"]
        gs = []
        for i in range(min(batches, len(tr.images) // batch)):
            sl = slice(i * batch, (i + 1) * batch)
            c, _ = model(tr.images[sl])
            gs.append((c.sigmoid() - tr.cls_target[sl]).abs()[tr.cls_weight[sl].bool()].reshape(-1).double().numpy())
    return g, gs, d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a toy size: the smoke test")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", action="append", metavar="PAIR",
                    help="rerun only this pair of losses (as named in the table, e.g. 'CE + smooth L1'; repeatable), "
                         "the others' runs read from OUT/runs.json; the g, beta and gr figures are redrawn only "
                         "when CE + smooth L1 runs")
    args = ap.parse_args(argv)
    plt = _plt()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    sizes = TINY if args.tiny else FULL
    names = {" + ".join(c): c for c in det.CONFIGS}
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        ap.error(f"--only: no pair named {unknown}; the pairs: {sorted(names)}")
    saved = {}
    if args.only:
        try:
            saved = {o["name"]: o for o in json.loads((out / "runs.json").read_text())}
        except FileNotFoundError:
            ap.error(f"--only needs the runs of a full run in {out / 'runs.json'}")
    split = {name: det.prepare(det.render(n, seed)) for name, (n, seed) in sizes["splits"].items()}

    def log(line):
        print(line, file=sys.stderr, flush=True)

    outcomes, ce_model = [], None
    for name, config in names.items():
        if args.only and name not in args.only:
            o = saved[name]
            outcomes.append(det.Outcome(config, {int(k): v for k, v in o["grid"].items()}, o["chosen"], o["at_edge"],
                                        o["runs"]))
            continue
        outcome, model = det.search_and_repeat(config, split["train"], split["val"], split["test"],
                                               seeds=sizes["seeds"], grid=sizes["grid"], log=log,
                                               max_epochs=sizes["max_epochs"], patience=sizes["patience"])
        outcomes.append(outcome)
        ce_model = model if config == ("CE", "smooth L1") else ce_model
        log(f"{name}: learning rate {det.rate(outcome.chosen):.2g}, test AP "
            f"{[round(r['test_ap'], 4) for r in outcome.runs]}")
    (out / "runs.json").write_text(json.dumps(
        [{"name": " + ".join(o.config), "grid": o.grid, "chosen": o.chosen, "at_edge": o.at_edge, "runs": o.runs}
         for o in outcomes], indent=1))
    written = []
    if ce_model is not None:
        g, batches, d = _statistics(ce_model, split)
        written += gradient_norm_figures(plt, g, out)
        written += beta_figures(plt, batches, out)
        written += regression_figures(plt, d, out)
    more, table = comparison(plt, out, outcomes)
    written += more
    (out / "results.md").write_text(
        "# CE vs focal loss vs GHM-C, smooth L1 vs GHM-R, on the detection task of benchmarks/detection.py\n\n"
        f"Command: `python -m benchmarks.figures{' --tiny' if args.tiny else ''}`"
        f"{' (then ' + ', '.join(repr(n) for n in args.only) + ' rerun with --only)' if args.only else ''}\n\n"
        + table + "\n")
    print(table)
    print("wrote " + ", ".join(str(out / w) for w in written + ["results.md", "runs.json"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
