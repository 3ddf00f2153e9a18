"""The paper's figures regenerated from this project's code, and CE vs focal loss vs GHM-C (smooth
L1 vs GHM-R) trained on a task anyone can rerun (``benchmarks/task.py``).

    python -m benchmarks.figures            # docs/figures/*.png and docs/figures/results.md (a few minutes)
    python -m benchmarks.figures --tiny     # the same at a toy size (the smoke test)

Each loss gets its learning rate from {1e-3, 3e-3, 1e-2} by average precision (or box error) on a
validation task of its own seed; then it is trained with that rate on 3 seeds, and the table
reports the mean and standard deviation. The beta of the figures is the reference's
(``reference.harmonize``, unit regions, Eqs. 9-13).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import reference
from reference import equations as eq

from . import task as tk

OUT = Path(__file__).parent.parent / "docs" / "figures"
RATES = (1e-3, 3e-3, 1e-2)


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


def _pick_rate(train_fn, name, metric, better, val_seed, size) -> float:
    tr, va = tk.make_task(val_seed, **size)
    scores = {lr: train_fn(name, tr, va, val_seed, lr=lr)[metric] for lr in RATES}
    return max(scores, key=scores.get) if better == "max" else min(scores, key=scores.get)


def comparison(plt, out: Path, seeds: int, size: dict, epochs: int) -> tuple[list[str], str]:
    import torch

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    results, curves = {}, {}
    for kind, names, train_fn, metric, better in (
            ("cls", tk.classification_losses(), tk.train_classifier, "ap", "max"),
            ("reg", tk.regression_losses(), tk.train_regressor, "mae", "min")):
        kwargs = {"epochs": epochs} if kind == "cls" else {"epochs": max(epochs * 25, 20)}

        def run(name, tr, te, seed, lr, fn=train_fn, kw=kwargs):
            return fn(name, tr, te, seed, lr=lr, **kw)

        for name in names:
            lr = _pick_rate(run, name, metric, better, 100, size)
            values, lines = [], []
            for seed in range(seeds):
                tr, te = tk.make_task(seed, **size)
                r = run(name, tr, te, seed, lr)
                values.append(r[metric])
                lines.append(r["curve"])
                print(f"{name} seed {seed} lr {lr:g}: {metric} {r[metric]:.4f}", file=sys.stderr, flush=True)
            results[(kind, name)] = (np.mean(values), np.std(values), lr)
            curves[(kind, name)] = np.mean(np.array(lines), axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (kind, name), curve in curves.items():
        ax = axes[0] if kind == "cls" else axes[1]
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    axes[0].set(xlabel="epoch", ylabel="test average precision", title=f"classification, mean of {seeds} seeds")
    axes[1].set(xlabel="step (x10)", ylabel="test mean |box error|", title=f"box regression, mean of {seeds} seeds")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    plt.close(fig)
    rows = ["| head | loss | learning rate | test metric (mean +- std over seeds) |", "| --- | --- | --- | --- |"]
    for (kind, name), (mean, std, lr) in results.items():
        what = "AP" if kind == "cls" else "mean abs box error"
        rows.append(f"| {'classification' if kind == 'cls' else 'regression'} | {name} | {lr:g} | "
                    f"{what} {mean:.3f} +- {std:.3f} |")
    return ["training.png"], "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a toy size: the smoke test")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    plt = _plt()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = {"n_train": 20_000, "n_test": 10_000, "positive_rate": 0.01} if args.tiny else {}
    seeds, epochs = (1, 1) if args.tiny else (3, 15)
    import torch

    # a CE-trained model's gradient norms (the paper's Figure 1 starts there)
    tr, te = tk.make_task(0, **size)
    body, head, reg = tk.model(0)
    opt = torch.optim.Adam(list(body.parameters()) + list(head.parameters()), lr=3e-3)
    x, y = torch.tensor(tr.x), torch.tensor(tr.y)
    for _ in range(epochs):
        for start in range(0, len(x), 20_000):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(head(body(x[start:start + 20_000])),
                                                                 y[start:start + 20_000]).backward()
            opt.step()
    with torch.no_grad():
        p = torch.sigmoid(head(body(torch.tensor(te.x))))[:, 0].numpy().astype(np.float64)
        g = np.abs(p - te.positive)
        batches = [np.abs(torch.sigmoid(head(body(x[s:s + 20_000])))[:, 0].numpy().astype(np.float64)
                          - tr.y[s:s + 20_000, 0]) for s in range(0, min(len(x), 100_000), 20_000)]
    written = gradient_norm_figures(plt, g, out)
    written += beta_figures(plt, batches, out)
    # a smooth-L1 regressor's residuals on the positives
    opt = torch.optim.Adam(list(body.parameters()) + list(reg.parameters()), lr=3e-3)
    xp, tp = torch.tensor(tr.x[tr.positive]), torch.tensor(tr.box[tr.positive])
    for _ in range(max(epochs * 25, 20)):
        opt.zero_grad()
        torch.nn.functional.smooth_l1_loss(reg(body(xp)), tp, beta=1 / 9).backward()
        opt.step()
    with torch.no_grad():
        d = (reg(body(torch.tensor(te.x[te.positive]))).numpy() - te.box[te.positive]).ravel().astype(np.float64)
    written += regression_figures(plt, d, out)
    more, table = comparison(plt, out, seeds, size, epochs)
    written += more
    (out / "results.md").write_text(
        "# CE vs focal loss vs GHM-C (and smooth L1 vs GHM-R) on the task of benchmarks/task.py\n\n"
        f"Command: `python -m benchmarks.figures{' --tiny' if args.tiny else ''}`\n\n" + table + "\n")
    print(table)
    print("wrote " + ", ".join(str(out / w) for w in written + ["results.md"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
