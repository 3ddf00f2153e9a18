"""How far each worker's beta is from the global batch's when every worker harmonizes its own
batch (sync_density=False), for a dense detector's gradient-norm distribution split over 8
workers: prints a Markdown table (used in the README's Multi-GPU section).

    python examples/density_noise.py

The gradient norms are drawn like a converged detector's (spec.md, paper Fig. 1: most entries
easy, g near 0; a few hard or mislabelled ones near 1). With sync_density=True every worker uses
the global batch's beta exactly: the deviation is 0 by construction (tests/test_distributed.py).
"""

from __future__ import annotations

import numpy as np

from reference import equations as eq
from reference import harmonize

WORKERS = 8


def gradient_norms(n: int, rng: np.random.Generator) -> np.ndarray:
    easy = rng.beta(0.3, 30.0, size=n)  # the flood of easy negatives near g = 0
    hard = rng.uniform(0.0, 1.0, size=n)
    return np.where(rng.random(n) < 0.995, easy, hard)


def deviation(per_worker: int, bins: int, dialect: str, rng: np.random.Generator) -> tuple[float, float]:
    """(median and 99th percentile over entries of |beta_local / beta_global - 1|)."""
    g = gradient_norms(per_worker * WORKERS, rng)
    ind = eq.region_index(g, bins)
    beta_global, _ = harmonize(ind, bins=bins, momentum=0.0, state=None, dialect=dialect)
    parts = [
        harmonize(part, bins=bins, momentum=0.0, state=None, dialect=dialect)[0] for part in np.split(ind, WORKERS)
    ]
    rel = np.abs(np.concatenate(parts) / beta_global - 1.0)
    return float(np.median(rel)), float(np.quantile(rel, 0.99))


def main() -> None:
    rng = np.random.default_rng(0)
    rows = [
        "| entries per worker | GHM-C bins=30, paper: median / p99 deviation | mmdet: median / p99 |",
        "| --- | --- | --- |",
    ]
    for per_worker in (1_000, 10_000, 100_000, 1_000_000):
        cells = []
        for dialect in ("paper", "mmdet"):
            med, p99 = deviation(per_worker, 30, dialect, rng)
            cells.append(f"{med:.1%} / {p99:.0%}")
        rows.append(f"| {per_worker:,} | " + " | ".join(cells) + " |")
    print(
        f"beta of each of {WORKERS} workers harmonizing its own batch, relative to the global batch's beta "
        "(sync_density=True: 0 exactly):\n"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
