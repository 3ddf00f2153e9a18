"""Forward + backward time of GHM-C: impl_torch (eager, and torch.compile) against a loop-over-
regions port in the official code's style (one host sync per region). Prints a table.

    python benchmarks/bench_torch.py [--device cpu|cuda] [--sizes 100000,1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from impl_torch import GHMCLoss


def loop_port(pred, target, label_weight, bins=30):
    """The official code's structure (mmdetection GHMC, no momentum): a Python loop over regions,
    ``.item()`` per region and for ``tot``. Written here only as the baseline to time."""
    edges = torch.arange(bins + 1, device=pred.device).float() / bins
    edges[-1] += 1e-6
    weights = torch.zeros_like(pred)
    g = torch.abs(pred.sigmoid().detach() - target)
    valid = label_weight > 0
    tot = max(valid.float().sum().item(), 1.0)
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num_in_bin = inds.sum().item()
        if num_in_bin > 0:
            weights[inds] = tot / num_in_bin
            n += 1
    if n > 0:
        weights = weights / n
    return F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum") / tot


def timed(fn, pred, target, lw, repeat, device):
    def once():
        x = pred.detach().requires_grad_(True)
        fn(x, target, lw).backward()
        if device == "cuda":
            torch.cuda.synchronize()

    once()  # warm-up (and compilation)
    once()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="100000,1000000,4000000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    ours = GHMCLoss(bins=30, dialect="mmdet").to(args.device)
    impls = {"loop over regions (official style)": loop_port, "impl_torch eager": ours}
    if not args.no_compile:
        impls["impl_torch torch.compile"] = torch.compile(ours, fullgraph=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"GHM-C forward+backward, bins=30, median of {args.repeat}, device={args.device}, "
          f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    print(f"| {'implementation':36} | " + " | ".join(f"{n:>10,} entries" for n in sizes) + " |")
    print(f"| {'-' * 36} | " + " | ".join("-" * 18 for _ in sizes) + " |")
    results = {name: [] for name in impls}
    for n in sizes:
        pred = torch.randn(n // 80, 80, device=args.device) * 3
        target = (torch.rand(n // 80, 80, device=args.device) < 0.02).float()
        lw = (torch.rand(n // 80, 80, device=args.device) < 0.95).float()
        ref = None
        for name, fn in impls.items():
            results[name].append(timed(fn, pred, target, lw, args.repeat, args.device))
            value = fn(pred, target, lw).item()
            ref = value if ref is None else ref
            assert abs(value - ref) <= 1e-4 * abs(ref), f"{name} disagrees: {value} vs {ref}"
    for name, ms in results.items():
        print(f"| {name:36} | " + " | ".join(f"{t:15.1f} ms" for t in ms) + " |")


if __name__ == "__main__":
    main()
