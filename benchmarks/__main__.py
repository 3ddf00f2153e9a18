"""Forward + backward time and peak memory of GHM-C and GHM-R against the plain losses and the
official-style loop over regions, for torch (eager, torch.compile), TensorFlow (eager, XLA) and
JAX (jit).

    python -m benchmarks                       # the full matrix (about 15 min on 2 CPU cores)
    python -m benchmarks --quick               # a few minutes: 1e4 and 1e6 entries, bins 30, no momentum
    python -m benchmarks --device cuda         # where a GPU exists

Each time is the median of ``--repeats`` runs after two warm-up runs (which include compilation);
the implementations of one group are run interleaved (A B C A B C ...), so that the machine's
drift affects them alike, and each ratio is taken within its group. Peak memory is measured in
a fresh subprocess per loss at the headline size (CPU: the rise of the resident set size during
one forward + backward, sampled every 0.5 ms, after warm-up and after returning free pages to
the system; CUDA: torch.cuda.max_memory_allocated). Writes benchmarks/results.md (the tables,
the machine, the command) and benchmarks/results.png (time against entries, log-log).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from .common import machine, time_group
from .impls import Config, arrays, jax_losses, jax_runner, tf_losses, tf_runner, torch_losses, torch_runner

HERE = Path(__file__).parent
HEADLINE = {"c": Config("c", 4_000_000, 30, 0.0), "r": Config("r", 1_600_000, 10, 0.0)}


def _groups(frameworks, device):
    """(framework, mode, losses(cfg), runner factory, compiled)."""
    out = []
    if "torch" in frameworks:
        out += [
            ("torch", "eager", torch_losses, torch_runner, False),
            (
                "torch",
                "compiled",
                lambda cfg: {k: v for k, v in torch_losses(cfg).items() if "loop" not in k},
                torch_runner,
                True,
            ),
        ]
    if "tf" in frameworks:
        out += [("tf", "eager", tf_losses, tf_runner, False), ("tf", "XLA", tf_losses, tf_runner, True)]
    if "jax" in frameworks:
        out += [("jax", "jit", jax_losses, jax_runner, True)]
    return out


def peak_memory(framework: str, mode: str, name: str, cfg: Config, device: str) -> float | None:
    """MB, measured in a fresh subprocess (``benchmarks.memory``)."""
    args = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        framework,
        mode,
        name,
        cfg.loss_kind,
        str(cfg.entries),
        str(cfg.bins),
        str(cfg.momentum),
        device,
    ]
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        timeout=1200,
        env=dict(os.environ, PYTHONPATH=str(HERE.parent)),
    )
    if proc.returncode != 0:
        print(f"  memory of {framework} {mode} {name} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", default="10000,100000,1000000,4000000", help="entries per call, comma-separated")
    ap.add_argument("--bins", default="10,30")
    ap.add_argument("--momentum", default="0,0.75")
    ap.add_argument("--losses", default="c,r")
    ap.add_argument("--frameworks", default="torch,tf,jax")
    ap.add_argument(
        "--modes",
        default="eager,compiled,XLA,jit",
        help="which of: eager (torch, tf), compiled (torch), XLA (tf), jit (jax)",
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="1e4 and 1e6 entries, bins 30 (10 for GHM-R), no momentum")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--output-dir", default=str(HERE))
    args = ap.parse_args(argv)
    if args.quick:  # bins: 30 for GHM-C, 10 for GHM-R (the papers' settings)
        args.sizes, args.momentum, args.repeats = "10000,1000000", "0", 5
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    bins_list = [int(b) for b in args.bins.split(",")]
    momenta = [float(m) for m in args.momentum.split(",")]
    losses = args.losses.split(",")
    frameworks = args.frameworks.split(",")
    groups = [g for g in _groups(frameworks, args.device) if g[1] in args.modes.split(",")]

    rows = []  # dicts: loss, framework, mode, impl, entries, bins, momentum, seconds
    for loss_kind in losses:
        for bins in [HEADLINE[loss_kind].bins] if args.quick else bins_list:
            for momentum in momenta:
                for n in sizes:
                    cfg = Config(loss_kind, n, bins, momentum)
                    data = arrays(cfg)
                    for framework, mode, make, runner, compiled in groups:
                        if framework == "torch" and compiled:
                            import torch

                            torch._dynamo.reset()
                        runners = {name: runner(fn, data, args.device, compiled) for name, fn in make(cfg).items()}
                        for name, seconds in time_group(runners, args.repeats).items():
                            rows.append(
                                dict(
                                    loss=loss_kind,
                                    framework=framework,
                                    mode=mode,
                                    impl=name,
                                    entries=n,
                                    bins=bins,
                                    momentum=momentum,
                                    seconds=seconds,
                                )
                            )
                        done = ", ".join(f"{r['impl']} {r['seconds'] * 1e3:.2f} ms" for r in rows[-len(runners) :])
                        print(
                            f"GHM-{loss_kind.upper()} N={n:,} bins={bins} momentum={momentum} {framework} {mode}: "
                            f"{done}",
                            file=sys.stderr,
                            flush=True,
                        )
    memory = []
    if not args.no_memory:
        for loss_kind in losses:
            cfg = HEADLINE[loss_kind]
            if args.quick:
                cfg = Config(loss_kind, max(sizes), cfg.bins, 0.0)
            for framework, mode, make, _, _ in groups:
                for name in make(cfg):
                    mb = peak_memory(framework, mode, name, cfg, args.device)
                    memory.append(
                        dict(loss=loss_kind, framework=framework, mode=mode, impl=name, entries=cfg.entries, peak_mb=mb)
                    )
    text = report(rows, memory, argv if argv is not None else sys.argv[1:], args.device)
    print(text)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + _kept_section(out / "results.md"))
    (out / "results.json").write_text(json.dumps({"rows": rows, "memory": memory, "machine": machine()}, indent=1))
    if not args.no_plot:
        plot(rows, out / "results.png")
    return 0


def _kept_section(path: Path) -> str:
    """The per-iteration section that ``python -m benchmarks.detector`` wrote, kept as it is."""
    from .detector import SECTION

    old = path.read_text() if path.exists() else ""
    at = old.find(f"## {SECTION}")
    return "" if at < 0 else "\n" + old[at:]


BASELINE = {
    ("c", "eager"): "BCE",
    ("c", "compiled"): "BCE",
    ("c", "XLA"): "sigmoid CE",
    ("c", "jit"): "sigmoid CE",
    ("r", "eager"): "ASL1",
    ("r", "compiled"): "ASL1",
    ("r", "XLA"): "ASL1",
    ("r", "jit"): "ASL1",
}


def report(rows, memory, argv, device) -> str:
    lines = [
        "# Benchmark: GHM losses against the plain losses",
        "",
        f"Machine: {machine()}; device {device}; {datetime.date.today().isoformat()}.",
        f"Command: `python -m benchmarks {' '.join(argv)}`",
        "",
        "Forward + backward, median of interleaved runs after warm-up; label weights given (all 1); "
        "mmdet dialect. Ratios are GHM / the plain loss of the same framework and mode (lower is better), "
        "and the official loop / GHM eager.",
        "",
    ]
    for loss_kind in sorted({r["loss"] for r in rows}):
        ghm = f"GHM-{loss_kind.upper()}"
        lines += [
            f"## {ghm}",
            "",
            "| framework, mode | entries | bins | momentum | GHM ms | plain ms | GHM / plain | "
            "other baselines (ms; ratio) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        keyed = {}
        for r in rows:
            if r["loss"] == loss_kind:
                keyed.setdefault((r["framework"], r["mode"], r["entries"], r["bins"], r["momentum"]), {})[r["impl"]] = (
                    r["seconds"]
                )
        for (framework, mode, n, bins, momentum), impls in sorted(keyed.items()):
            mine = next(v for k, v in impls.items() if k.startswith("GHM"))
            plain_name = "sigmoid CE" if framework == "tf" and loss_kind == "c" else BASELINE[(loss_kind, mode)]
            plain = impls.get(plain_name)
            others = "; ".join(
                f"{k} {v * 1e3:.2f} ({(v / mine if 'loop' in k else mine / v):.2f}x)"
                for k, v in impls.items()
                if not k.startswith("GHM") and k != plain_name
            )
            lines.append(
                f"| {framework} {mode} | {n:,} | {bins} | {momentum:g} | {mine * 1e3:.2f} | "
                f"{'' if plain is None else f'{plain * 1e3:.2f}'} | "
                f"{'' if plain is None else f'{mine / plain:.2f}x'} | {others} |"
            )
        lines.append("")
    if memory:
        lines += [
            "## Peak memory at the headline size",
            "",
            "CPU: the rise of the resident set size during one forward + backward above its level just "
            "before (inputs allocated, warm-up done, free pages returned to the system), in a fresh "
            "subprocess per loss. CUDA: torch.cuda.max_memory_allocated above the inputs.",
            "",
            "| loss | framework, mode | implementation | entries | peak MB | / plain |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        plain_mb = {
            (m["loss"], m["framework"], m["mode"]): m["peak_mb"]
            for m in memory
            if m["impl"] in ("BCE", "sigmoid CE", "ASL1")
        }
        for m in memory:
            base = plain_mb.get((m["loss"], m["framework"], m["mode"]))
            ratio = "" if not base or m["peak_mb"] is None else f"{m['peak_mb'] / base:.2f}x"
            lines.append(
                f"| GHM-{m['loss'].upper()} | {m['framework']} {m['mode']} | {m['impl']} | {m['entries']:,} | "
                f"{m['peak_mb']} | {ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plot]'): no plot", file=sys.stderr)
        return
    kinds = sorted({r["loss"] for r in rows})
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.5), squeeze=False)
    for ax, loss_kind in zip(axes[0], kinds):
        sel = [r for r in rows if r["loss"] == loss_kind and r["momentum"] == 0.0]
        bins = max(r["bins"] for r in sel) if loss_kind == "c" else min(r["bins"] for r in sel)
        for key in sorted({(r["framework"], r["mode"], r["impl"]) for r in sel}):
            pts = sorted(
                (r["entries"], r["seconds"])
                for r in sel
                if r["bins"] == bins and (r["framework"], r["mode"], r["impl"]) == key
            )
            if pts:
                style = "-" if key[2].startswith("GHM") else "--"
                ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], style, marker="o", label=" ".join(key))
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="entries per call",
            ylabel="forward + backward (ms)",
            title=f"GHM-{loss_kind.upper()}, bins={bins}, no momentum",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
