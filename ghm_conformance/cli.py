"""``ghm-conformance``: check GHM ports against the reference and name their dialect.

Exit status: 0 when every target matches a dialect and passes every applicable property,
1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys

from .report import dumps, to_json, to_markdown
from .runner import run_catalogue
from .targets import TargetError, bundled_targets, load_target

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ghm-conformance",
        description="Check a GHM port against the reference (spec.md), name its dialect, and shrink every "
                    "disagreement to a minimal counterexample. Without TARGET: this project's torch and tf "
                    "GHM-C and GHM-R in both dialects.")
    p.add_argument("target", nargs="?", help="a port factory, 'package.module:make_port' (see README: port protocol)")
    p.add_argument("--loss", choices=["c", "r"], default=None, help="GHM-C or GHM-R (default: c for a TARGET)")
    p.add_argument("--dialect", choices=["paper", "mmdet"], default=None,
                   help="judge in this dialect (default: detect it)")
    p.add_argument("--max-examples", type=int, default=25, metavar="N", help="Hypothesis examples per property (25)")
    p.add_argument("--seed", type=int, default=None, help="a random seed (default: deterministic search)")
    p.add_argument("--report", metavar="PATH", help="also write the Markdown report here")
    p.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its message
        return USAGE_ERROR if e.code else 0
    if args.max_examples < 1:
        print("ghm-conformance: error: --max-examples must be >= 1", file=sys.stderr)
        return USAGE_ERROR
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    skipped: list[str] = []
    try:
        if args.target is None:
            targets, skipped = bundled_targets(args.dialect, args.loss)
            if not targets:
                raise TargetError("neither impl_torch nor impl_tf is importable: " + "; ".join(skipped))
        else:
            targets = [load_target(args.target, args.loss or "c")]
    except TargetError as e:
        print(f"ghm-conformance: error: {e}", file=sys.stderr)
        return USAGE_ERROR

    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    reports = []
    for t in targets:
        rep = run_catalogue(t.make_port, t.loss, target=t.name, dialect=args.dialect,
                            max_examples=args.max_examples, seed=args.seed, progress=progress)
        if t.expected_dialect is not None and rep.dialect != t.expected_dialect:
            rep.verdict_reason += f"; expected the {t.expected_dialect!r} dialect"
            rep.matched = False  # a bundled loss in the wrong dialect fails
        reports.append(rep)
    status = 0 if all(r.passed for r in reports) else 1
    doc = to_json(reports, {t.name: t.import_line for t in targets}, status, skipped)
    text = to_markdown(doc)
    print(text)
    try:
        if args.report:
            with open(args.report, "w") as f:
                f.write(text)
        if args.json:
            with open(args.json, "w") as f:
                f.write(dumps(doc))
    except OSError as e:
        print(f"ghm-conformance: error: cannot write the report: {e}", file=sys.stderr)
        return USAGE_ERROR
    return status


if __name__ == "__main__":
    sys.exit(main())
