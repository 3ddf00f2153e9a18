"""The census of public GHM ports: the kit run on every adapter of ``ports/`` whose source file
is present, and the table of verdicts (docs/ports.md) regenerated from the runs, never edited
by hand.

    python -m ghm_conformance.census --sources DIR               # DIR/<owner>/<repo>/<path>
    python -m ghm_conformance.census --sources DIR --only mmdet_2x --out report.md
    python -m ghm_conformance.census --sources DIR --jobs 4      # rows in parallel (default: the CPU count)

Each port is checked in its own process by the exact command its row prints
(``GHM_PORT_SOURCES=DIR ghm-conformance ports.<module>:<factory> --loss c``), so a port that
crashes, hangs or changes global framework state (TF1) affects no other. A row also says
whether the verdict agrees with the adapter's reading of the port's code: a disagreement is a
kit bug or a misreading, and the census exits 1 on one. Exit status 0 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ENV = "GHM_PORT_SOURCES"


# What the census reads of an adapter package (``ports/_load.py``'s Source, PortEntry, Adapter and
# ``_looked.py``'s Looked), by structure: the kit does not import the adapters package.
class SourceLike(Protocol):
    @property
    def repo(self) -> str: ...
    @property
    def commit(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def download(self) -> str: ...
    def file(self, root: str | None = None) -> Path: ...


class EntryLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def attr(self) -> str: ...
    @property
    def loss(self) -> str: ...
    @property
    def call(self) -> str: ...
    @property
    def reading(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def cli_args(self) -> Sequence[str]: ...
    @property
    def wiring(self) -> str: ...


class AdapterLike(Protocol):
    @property
    def source(self) -> SourceLike: ...
    @property
    def framework(self) -> str: ...
    @property
    def patches(self) -> Sequence[str]: ...
    @property
    def entries(self) -> Sequence[EntryLike]: ...
    @property
    def package(self) -> str | None: ...
    @property
    def origin(self) -> str | None: ...
    @property
    def copies(self) -> Sequence[str]: ...
    @property
    def source_of_record(self) -> str: ...


class LookedLike(Protocol):
    @property
    def repo(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def framework(self) -> str: ...
    @property
    def what(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass
class Row:
    module: str  # the adapter module, e.g. "ports.mmdet_2x"
    adapter: AdapterLike
    entry: EntryLike
    ran: bool = False
    summary: str = ""  # the verdict, or why the port was not run
    agrees: bool | None = None
    seconds: float = 0.0
    detail: str = ""  # the first failing property's message, for the notes under the table
    kit_says: str = ""  # the kit's own explanation of the verdict (narrow input classes), for the "why" column

    def command(self, sources: str = "DIR") -> str:
        args = " ".join(("--loss", self.entry.loss) + tuple(self.entry.cli_args))
        return f"{ENV}={sources} ghm-conformance {self.module}:{self.entry.attr} {args}"


def adapters(package: str) -> list[tuple[str, AdapterLike]]:
    """(module name, ADAPTER) of every adapter module in ``package``, in name order."""
    pkg = importlib.import_module(package)
    out: list[tuple[str, AdapterLike]] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        if hasattr(module, "ADAPTER"):
            out.append((f"{package}.{info.name}", module.ADAPTER))
    return out


def run_row(row: Row, sources: str, *, max_examples: int, timeout: float) -> None:
    """The kit on one port, in a subprocess, by the row's own command."""
    if not row.adapter.source.file(sources).is_file():
        row.summary = "not run: source not present"
        return
    package = row.adapter.package
    if package and importlib.util.find_spec(package) is None:
        row.summary = f"not run: needs {package}, not installed"
        return
    cmd = [
        sys.executable,
        "-m",
        "ghm_conformance",
        f"{row.module}:{row.entry.attr}",
        "--loss",
        row.entry.loss,
        *row.entry.cli_args,
        "--json",
        "-",
        "--quiet",
        "--max-examples",
        str(max_examples),
    ]
    env = dict(os.environ, **{ENV: sources, "TF_CPP_MIN_LOG_LEVEL": "3"})
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        row.ran, row.summary, row.seconds = True, f"error: no verdict within {timeout:g} s", timeout
        row.agrees = False
        return
    row.seconds, row.ran = time.perf_counter() - start, True
    try:
        target = json.loads(proc.stdout)["targets"][0]
    except (json.JSONDecodeError, KeyError, IndexError):
        row.summary = f"error: exit status {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1]}"
        row.agrees = False
        return
    row.summary = target["verdict"]["summary"]
    row.agrees = row.summary == row.entry.reading
    failing = [p for p in target["properties"] if p["counts"] and p["counterexample"] and p["shown"] != "note"]
    row.detail = f"{failing[0]['property']}: {failing[0]['counterexample']['message']}" if failing else ""
    row.kit_says = kit_explanation(target["verdict"])


def kit_explanation(verdict: dict) -> str:
    """What the kit itself says of a verdict beyond its summary: the narrow input class outside
    which the port matches its dialect, and the input class of each fault that has one."""
    from .input_class import WHY

    parts = []
    if verdict.get("except_for"):
        cls = verdict["except_for"]
        why = f" ({WHY[cls]})" if cls in WHY else ""
        parts.append(f"matches {verdict['judged_in']} everywhere except {cls}{why}")
    parts += [
        f"{fault} fails for {cls}"
        for fault, cls in verdict.get("classes", {}).items()
        if cls != verdict.get("except_for")
    ]
    return "; ".join(parts)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def sources_of(rows: list[Row]) -> list[str]:
    """The distinct sources of the rows: a file copied from another repository counts under its origin."""
    return sorted({r.adapter.source_of_record for r in rows}, key=str.lower)


def to_markdown(
    rows: list[Row],
    sources: str,
    seconds: float,
    command: str,
    looked: Sequence[LookedLike] = (),
    where: Sequence[str] = (),
) -> str:
    ran = [r for r in rows if r.ran]
    adapters_ = list({r.module: r.adapter for r in rows}.items())
    copies = sorted({c for _, a in adapters_ for c in a.copies})
    lines = [
        "# A census of public GHM ports",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()} ({len(ran)} of {len(rows)} ports run, "
        f"from {_count(len(sources_of(rows)), 'source')}; {seconds:.0f} s); never edited by hand. A *source* is a "
        "repository whose code is its own: a copy of another's file counts once, under its origin, with the "
        f"copies found listed below ({_count(len(copies), 'repository', 'repositories')}). Each row's command "
        "reproduces its verdict "
        "once the port's source is downloaded (the adapter's docstring, and the list below, say from where; "
        "`DIR` is the folder given as `--sources`). How to read a verdict: [Checking a port](checking-a-port.md).",
        "",
        "| port | where (repository @ commit, path) | framework, call | loss | verdict | why | reading "
        "agrees | s | reproduce |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        src, e = r.adapter.source, r.entry
        where_ = f"[{src.repo}]({src.url}) @ {src.commit[:7]}, `{src.path}`"
        agrees = {True: "yes", False: "**no**", None: "-"}[r.agrees]
        why = e.reason or ("a faithful port" if r.summary.startswith("conforms") else "")
        if r.kit_says:
            why += f" (kit: {r.kit_says})"
        lines.append(
            f"| {_cell(e.name)} ({e.wiring}) | {where_} | {r.adapter.framework}: {_cell(e.call)} | "
            f"GHM-{e.loss.upper()} | {_cell(r.summary)} | {_cell(why)} | {agrees} | "
            f"{r.seconds:.0f} | `{r.command()}` |"
        )
    lines += ["", "## Where each port lives and what its adapter patches", ""]
    for module, adapter in adapters_:
        patches = "; ".join(adapter.patches) or "none"
        origin = f" A copy of {adapter.origin}'s code." if adapter.origin else ""
        found = f" Copies found (not run again): {', '.join(adapter.copies)}." if adapter.copies else ""
        lines.append(f"- `{module}`: `{adapter.source.download}`. Load-time patches: {patches}.{origin}{found}")
    if looked:
        lines += [
            "",
            "## Looked at but could not run",
            "",
            "| repository, path | framework | what it holds | why it was not run |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {_cell(x.repo)}, `{x.path}` | {x.framework} | {_cell(x.what)} | {_cell(x.reason)} |" for x in looked
        ]
    if where:
        lines += [
            "",
            "## Where we looked",
            "",
            "The census's search for public ports (a stored index of public GitHub repositories: code "
            "search by meaning, exact strings, exact paths, repository names); a port missing here may "
            "still exist where none of these reach.",
            "",
        ]
        lines += [f"- {w}" for w in where]
    disagreements = [r for r in rows if r.agrees is False]
    if disagreements:
        lines += ["", "## Verdicts that disagree with the reading of the code (to investigate)", ""]
        lines += [
            f"- {r.entry.name} ({r.module}): read as `{r.entry.reading}`, judged `{r.summary}`. {r.detail}"
            for r in disagreements
        ]
    return "\n".join(lines) + "\n"


def _looked(package: str) -> tuple[tuple[LookedLike, ...], tuple[str, ...]]:
    """(NOT_RUN, WHERE) of the adapters package's ``_looked`` module, if it has one."""
    try:
        module = importlib.import_module(f"{package}._looked")
    except ImportError:
        return (), ()
    return tuple(getattr(module, "NOT_RUN", ())), tuple(getattr(module, "WHERE", ()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ghm_conformance.census", description=__doc__.splitlines()[0])
    p.add_argument("--sources", required=True, metavar="DIR", help="the folder holding <owner>/<repo>/<path>")
    p.add_argument("--adapters", default="ports", help="the package of adapters (default: ports, from the cwd)")
    p.add_argument("--only", nargs="+", metavar="MODULE", help="only these adapter modules (e.g. mmdet_2x)")
    p.add_argument("--out", default="docs/ports.md", help="where the table goes (default: docs/ports.md)")
    p.add_argument("--max-examples", type=int, default=25, metavar="N")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="seconds for one port's whole run")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="rows run at once, each in its own process (default: the CPU count)",
    )
    args = p.parse_args(argv)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    sources = str(Path(args.sources).resolve())
    rows = [
        Row(module, adapter, entry)
        for module, adapter in adapters(args.adapters)
        if not args.only or module.rsplit(".", 1)[-1] in args.only
        for entry in adapter.entries
    ]
    start = time.perf_counter()
    done = 0

    def one(row: Row) -> Row:
        run_row(row, sources, max_examples=args.max_examples, timeout=args.timeout)
        return row

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(one, rows):  # in the table's order; each row is its own process
            done += 1
            print(
                f"[{done}/{len(rows)}] {row.module}:{row.entry.attr}: {row.summary} ({row.seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    command = "python -m ghm_conformance.census --sources DIR" + (
        f" --adapters {args.adapters}" if args.adapters != "ports" else ""
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    looked, where = _looked(args.adapters)
    Path(args.out).write_text(to_markdown(rows, sources, time.perf_counter() - start, command, looked, where))
    return 1 if any(r.agrees is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
