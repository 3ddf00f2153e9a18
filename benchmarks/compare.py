"""A/B benchmark of two versions of this repository, in one session on one machine:

    python -m benchmarks.compare REV            # REV against the working tree (uncommitted changes included)
    python -m benchmarks.compare REV REV2       # two commits
    python -m benchmarks.compare main --groups all --losses c,r
    python -m benchmarks.compare HEAD --quick   # a smoke run (seconds)

Each commit is checked out in a temporary git worktree (the working tree is used as it is) and
imported in a process of its own (``benchmarks/_ab_worker.py``); both processes run the same
harness, this tree's ``benchmarks/impls.py``: the same inputs, the same plain losses, the same
runners. Per group (framework and mode), after warm-up, the processes take turns, one round each
at a time, in the order A B B A A B ... (so that a drift of the machine hits both alike; the idle
process waits on a pipe and uses no CPU). A round is ``--reps`` forward + backward passes of the
GHM loss and of the plain loss, interleaved, and gives the round's ratio GHM / plain (medians
of its passes). Reported per side: the median ratio over the rounds and its spread; and the
quotient B / A of each pair of rounds (B's ratio over A's in the same pair), its median and
spread. The spread is the interval of order statistics that holds the median with probability
>= 90% whatever the distribution (with 12 rounds: the 3rd smallest to the 3rd largest; with
fewer than 5, the full range), so that a round in which another process took the CPU does not
decide it. The verdict says "regression" when the whole spread of the quotient lies above 1,
"faster" when it lies below 1, and "same within spread" otherwise.

Ratios, not times, are compared: a ratio to the plain loss of the same framework and mode, measured
in the same process a moment apart, cancels most of the machine's state. The last column is the
plain quotient of the GHM loss's own times (B over A, per pair of rounds): on a machine that other
processes share, a plain loss on OpenMP threads can run at a speed that depends on what its
process did before, and this column does not involve it. Timings are only
comparable within one run of this command: on a shared machine, run it alone (on the project's
machine: ``flock /tmp/ghm-heavy.lock python -m benchmarks.compare ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_ab_worker.py"
# (framework, mode) of each group, and the plain loss its GHM-C / GHM-R is divided by
GROUPS = {
    "torch-eager": ("torch", "eager"),
    "torch-compiled": ("torch", "compiled"),
    "tf-eager": ("tf", "eager"),
    "tf-XLA": ("tf", "XLA"),
    "jax-jit": ("jax", "jit"),
}
BASELINES = {
    ("torch", "c"): "BCE",
    ("tf", "c"): "sigmoid CE",
    ("jax", "c"): "sigmoid CE",
    ("torch", "r"): "ASL1",
    ("tf", "r"): "ASL1",
    ("jax", "r"): "ASL1",
}
BASELINE_TEXT = {"torch-compiled": "compiled {}", "tf-XLA": "XLA {}", "jax-jit": "jitted {}"}
HEADLINE = {"c": (4_000_000, 30), "r": (1_600_000, 10)}  # entries, bins: as ``python -m benchmarks``


def median_interval(values: list[float], coverage: float = 0.9) -> tuple[float, float]:
    """The k-th smallest and k-th largest of ``values``, with k the largest for which the interval
    holds the true median with probability >= ``coverage`` whatever the distribution (order
    statistics: P(k-th smallest <= median <= k-th largest) = 1 - 2 P(Binomial(n, 1/2) < k)).
    So one wild round (another process took the CPU) widens nothing; with fewer than 5 values
    it is the full range."""
    ordered = sorted(values)
    n, k = len(ordered), 1
    while k < n // 2 and 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n >= coverage:
        k += 1
    return ordered[k - 1], ordered[n - k]


def verdict(low: float, high: float) -> str:
    """From the spread [low, high] of the quotient B / A of the ratios."""
    if low > 1.0:
        return "regression"
    if high < 1.0:
        return "faster"
    return "same within spread"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


def repo_root() -> Path:
    return Path(_git(HERE.parent, "rev-parse", "--show-toplevel"))


@dataclass
class Checkout:
    """One side: a commit in a temporary worktree, or the working tree as it is (``rev`` None)."""

    label: str
    root: Path
    describe: str
    temporary: bool = False

    @classmethod
    def make(cls, repo: Path, rev: str | None, label: str, scratch: Path) -> Checkout:
        if rev is None:
            head = _git(repo, "log", "-1", "--format=%h")
            dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
            return cls(label, repo, f"working tree ({head}{' + uncommitted changes' if dirty else ''})")
        sha = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
        where = scratch / label
        _git(repo, "worktree", "add", "--detach", "--quiet", str(where), sha)
        return cls(label, where, f"{rev} ({_git(repo, 'log', '-1', '--format=%h %s', sha)[:90]})", temporary=True)

    def remove(self, repo: Path) -> None:
        if self.temporary:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(self.root)], capture_output=True
            )


@dataclass
class Worker:
    """A process that imports one checkout's losses (``_ab_worker.py``)."""

    checkout: Checkout
    framework: str
    log: object = None
    threads: int | None = None
    proc: subprocess.Popen = field(init=False, default=None)

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.checkout.root), TF_CPP_MIN_LOG_LEVEL="3")
        if self.threads:  # torch's OpenMP threads (TF and JAX keep their own pools)
            env["OMP_NUM_THREADS"] = str(self.threads)
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.checkout.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=self.checkout.root,
        )

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the {self.framework} process of side {self.checkout.label} died "
                f"(exit status {self.proc.wait()}); its stderr is in {self.log.name}"
            )
        return json.loads(line)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, BrokenPipeError, ValueError):
                self.ask({"cmd": "quit"})
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Row:
    group: str
    loss: str
    plain: str
    ratios: dict  # label -> [ratio per round]
    ms: dict  # label -> (GHM ms, plain ms), medians over the rounds
    error: dict  # label -> why the side could not run this group
    setup: dict = field(default_factory=dict)  # label -> the worker's setup reply (what it imported, versions)
    ghm_seconds: dict = field(default_factory=lambda: {"A": [], "B": []})  # label -> [GHM time per round]

    def quotients(self) -> list[float]:
        return [b / a for a, b in zip(self.ratios["A"], self.ratios["B"])]

    def time_quotients(self) -> list[float]:
        return [b / a for a, b in zip(self.ghm_seconds["A"], self.ghm_seconds["B"])]


def run_group(
    workers: dict, group: str, loss: str, entries: int, bins: int, momentum: float, rounds: int, reps: int
) -> Row:
    framework, mode = GROUPS[group]
    plain = BASELINES[(framework, loss)]
    args = dict(
        framework=framework,
        mode=mode,
        loss=loss,
        entries=entries,
        bins=bins,
        momentum=momentum,
        dialect="mmdet",
        baseline=plain,
    )
    row = Row(group, loss, BASELINE_TEXT.get(group, "{}").format(plain), {"A": [], "B": []}, {}, {})
    ready = {}
    for label, worker in workers.items():
        reply = worker.ask({"cmd": "setup", "args": args})
        if reply["ok"]:
            ready[label] = worker
            row.setup[label] = reply
        else:
            row.error[label] = reply["error"]
    if len(ready) < 2:
        return row
    samples = {"A": [], "B": []}
    for k in range(rounds):
        for label in ("A", "B") if k % 4 in (0, 3) else ("B", "A"):  # A B B A A B B A ...
            reply = ready[label].ask({"cmd": "measure", "reps": reps})
            if not reply["ok"]:
                row.error[label] = reply["error"]
                return row
            samples[label].append((reply["ghm"], reply["plain"]))
            row.ratios[label].append(reply["ghm"] / reply["plain"])
            row.ghm_seconds[label].append(reply["ghm"])
    for label, pairs in samples.items():
        row.ms[label] = tuple(statistics.median(p[i] for p in pairs) * 1e3 for i in (0, 1))
    return row


def _spread(values: list[float], digits: int = 2, unit: str = "") -> str:
    low, high = median_interval(values)
    return f"{statistics.median(values):.{digits}f}{unit} [{low:.{digits}f}-{high:.{digits}f}]"


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| group | GHM / | A: ratio [spread] | B: ratio [spread] | B / A [spread] | verdict | "
        "A ms (GHM, plain) | B ms (GHM, plain) | GHM time B / A [spread] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        name = f"{r.group.replace('-', ' ')}, GHM-{r.loss.upper()}"
        if r.error:
            why = "; ".join(f"{label}: {e}" for label, e in sorted(r.error.items()))
            lines.append(f"| {name} | {r.plain} | | | | not run ({why}) | | | |")
            continue
        q = r.quotients()
        ms = {label: f"{g:.2f}, {p:.2f}" for label, (g, p) in r.ms.items()}
        lines.append(
            f"| {name} | {r.plain} | {_spread(r.ratios['A'], unit='x')} | {_spread(r.ratios['B'], unit='x')} | "
            f"{_spread(q, 3)} | {verdict(*median_interval(q))} | {ms['A']} | {ms['B']} | "
            f"{_spread(r.time_quotients(), 3)} |"
        )
    return lines


def load_average() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    ap.add_argument("rev", help="side A: a commit (hash, branch, tag, HEAD~1, ...)")
    ap.add_argument("rev2", nargs="?", default=None, help="side B: a commit. Default: the working tree as it is")
    ap.add_argument(
        "--groups",
        default="torch-eager,torch-compiled",
        help=f"comma-separated, of {', '.join(GROUPS)}; or 'all' (torch-eager, torch-compiled, tf-XLA, "
        "jax-jit). Default: torch-eager,torch-compiled",
    )
    ap.add_argument(
        "--losses", default="c", help="c (GHM-C vs BCE / sigmoid CE), r (GHM-R vs ASL1), or c,r. Default: c"
    )
    ap.add_argument("--entries", type=int, default=None, help="entries per call. Default: 4,000,000 (C), 1,600,000 (R)")
    ap.add_argument("--bins", type=int, default=None, help="Default: 30 (C), 10 (R)")
    ap.add_argument("--momentum", type=float, default=0.0, help="Default: 0")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per side and group. Default: 12 (3 with --quick)")
    ap.add_argument("--reps", type=int, default=5, help="forward + backward passes of each loss per round. Default: 5")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: torch eager, GHM-C, 100,000 entries, 3 rounds (unless --rounds says) of 3 passes",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's intra-op threads in both sides' processes (OMP_NUM_THREADS). Default: torch's own "
        "choice. One thread takes the OpenMP barriers of the plain loss out of a shared machine's noise",
    )
    ap.add_argument("--fail-on-regression", action="store_true", help="exit status 1 when a row says regression")
    args = ap.parse_args(argv)
    if args.quick:
        args.groups, args.losses, args.reps = "torch-eager", "c", 3
        args.rounds = 3 if args.rounds is None else args.rounds
        args.entries = args.entries or 100_000
    args.rounds = 12 if args.rounds is None else args.rounds
    groups = ["torch-eager", "torch-compiled", "tf-XLA", "jax-jit"] if args.groups == "all" else args.groups.split(",")
    unknown = [g for g in groups if g not in GROUPS] + [k for k in args.losses.split(",") if k not in HEADLINE]
    if unknown:
        ap.error(f"unknown group or loss: {', '.join(unknown)}")
    if args.rounds < 1 or args.reps < 1:
        ap.error("--rounds and --reps must be >= 1")

    repo = repo_root()
    load_before = load_average()
    _git(repo, "worktree", "prune")  # worktrees of an earlier run that was killed
    rows: list[Row] = []
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ghm-ab-") as scratch:
        scratch = Path(scratch)
        sides = {}
        try:
            sides["A"] = Checkout.make(repo, args.rev, "A", scratch)
            sides["B"] = Checkout.make(repo, args.rev2, "B", scratch)
            for label, side in sides.items():
                print(f"{label}: {side.describe}", file=sys.stderr, flush=True)
            for framework in dict.fromkeys(GROUPS[g][0] for g in groups):
                logs = {label: open(scratch / f"{label}-{framework}.log", "w+") for label in sides}  # noqa: SIM115 - closed with the workers
                workers = {label: Worker(side, framework, logs[label], args.threads) for label, side in sides.items()}
                try:
                    for w in workers.values():
                        w.start()
                    for group in (g for g in groups if GROUPS[g][0] == framework):
                        for loss in args.losses.split(","):
                            entries = args.entries or HEADLINE[loss][0]
                            bins = args.bins or HEADLINE[loss][1]
                            row = run_group(workers, group, loss, entries, bins, args.momentum, args.rounds, args.reps)
                            rows.append(row)
                            for label, reply in sorted(row.setup.items()):
                                print(f"{label} imported {reply['imported']}", file=sys.stderr)
                            print("\n".join(table([row])[2:]), file=sys.stderr, flush=True)
                    versions[framework] = next(
                        (r.setup[k]["versions"] for r in rows for k in r.setup if GROUPS[r.group][0] == framework), ""
                    )
                except RuntimeError as exc:
                    for label, log in logs.items():
                        log.seek(0)
                        tail = log.read().splitlines()[-20:]
                        print(f"--- stderr of side {label} ({framework}):\n" + "\n".join(tail), file=sys.stderr)
                    raise SystemExit(f"error: {exc}") from exc
                finally:
                    for w in workers.values():
                        w.stop()
                    for log in logs.values():
                        log.close()
        finally:
            for side in sides.values():
                side.remove(repo)

    loss_text = ", ".join(
        f"GHM-{k.upper()} ({args.entries or HEADLINE[k][0]:,} entries, bins {args.bins or HEADLINE[k][1]})"
        for k in args.losses.split(",")
    )
    command = "python -m benchmarks.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    out = [
        f"A/B benchmark: `{command}`",
        "",
        f"- A: {sides['A'].describe}",
        f"- B: {sides['B'].describe}",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs"
        + (f" ({args.threads} torch thread{'s' if args.threads > 1 else ''}: --threads)" if args.threads else "")
        + f"; Python {platform.python_version()}"
        + "".join(f"; {v}" for v in versions.values() if v),
        f"- {loss_text}, mmdet dialect, momentum {args.momentum:g}, label weights given (all 1); forward + "
        f"backward; {args.rounds} rounds of {args.reps} interleaved passes per side, sides alternating "
        f"A B B A ...; ratio = GHM / plain (median of a round's passes), median [90% interval of the median, "
        f"order statistics] over the rounds; B / A per pair of rounds",
        f"- Load average (1/5/15 min) before: {load_before}, after: {load_average()} (on {os.cpu_count()} "
        f"CPUs: more than the run itself means other processes shared the CPU, and ratios to a plain loss "
        f"that runs on OpenMP threads suffer most from that)",
        "",
    ]
    out += table(rows)
    print("\n".join(out))
    regressed = any(not r.error and verdict(*median_interval(r.quotients())) == "regression" for r in rows)
    return 1 if regressed and args.fail_on_regression else 0


if __name__ == "__main__":
    sys.exit(main())
