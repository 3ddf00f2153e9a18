"""``ghm-conformance``: check GHM ports against the reference and name their dialect.

Exit status: 0 when every target conforms (matches a dialect and fails no conformance property;
robustness notes are reported, and count only with ``--strict``); 1 when one fails, errs, or a
call exceeds the time budget; 2 for usage errors (and an interrupted run: no verdict).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

from ghm_args import DIALECTS

from .report import dumps, to_json, to_markdown
from .runner import UsageError, run_catalogue
from .targets import BUNDLED, TargetError, bundled_targets, load_target

USAGE_ERROR = 2
DEFAULT_TIMEOUT = 10.0  # seconds per call; the run's first call may take FIRST_CALL_TIMEOUT (compilation)
FIRST_CALL_TIMEOUT = 120.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ghm-conformance",
        description="Check a GHM port against the reference (spec.md), name its dialect, and shrink every "
        "disagreement to a minimal counterexample. Without TARGET: this project's torch, tf and "
        "jax GHM-C and GHM-R in both dialects (--bundled picks backends).",
    )
    p.add_argument("target", nargs="?", help="a port factory, 'package.module:make_port' (see README: port protocol)")
    p.add_argument(
        "--bundled",
        nargs="+",
        choices=list(BUNDLED),
        default=None,
        metavar="BACKEND",
        help="without TARGET: the bundled backends to check, of torch, tf (Keras on TensorFlow), jax "
        "(impl_jax's functions, jitted) (default: all that are installed)",
    )
    p.add_argument("--loss", choices=["c", "r"], default=None, help="GHM-C or GHM-R (default: c for a TARGET)")
    p.add_argument("--dialect", choices=list(DIALECTS), default=None, help="judge in this dialect (default: detect it)")
    p.add_argument("--max-examples", type=int, default=25, metavar="N", help="Hypothesis examples per property (25)")
    p.add_argument("--seed", type=int, default=None, help="a random seed (default: deterministic search)")
    p.add_argument(
        "--targets",
        choices=["per-entry", "class-index"],
        default="per-entry",
        help="class-index: the port takes mmdetection labels (N,) with C = background and per-anchor weights (N,)",
    )
    p.add_argument("--no-label-weight", action="store_true", help="the port's step takes (pred, target) only")
    p.add_argument(
        "--weights",
        choices=["per-entry", "per-anchor"],
        default="per-entry",
        help="per-anchor: the port takes one label weight per row (N,), as Keras's per-sample weights",
    )
    p.add_argument(
        "--large",
        action="store_true",
        help="also check one call of 2^24 + 2^22 + 3 entries (exact counts; about 1 GB, a minute)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"the longest one call may take, in seconds ({DEFAULT_TIMEOUT:g}; the run's first call: "
        f"{FIRST_CALL_TIMEOUT:g}); a slower call ends the run",
    )
    p.add_argument("--report", metavar="PATH", help="also write the Markdown report here")
    p.add_argument(
        "--json", metavar="PATH", help="also write the JSON report here ('-': to stdout, instead of the Markdown)"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="robustness notes (behaviour outside spec.md's domain, e.g. NaN in masked entries) fail too",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


@contextlib.contextmanager
def _captured_output():
    """Everything written to stdout/stderr (Python or native code) goes to a file; yields a
    writer to the real stderr, for progress, and a function returning what was captured."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the capture ends
    real_err = os.fdopen(os.dup(saved_err), "w", buffering=1)
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)

    def captured() -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        sink.seek(0)
        return sink.read().decode(errors="replace")

    try:
        yield real_err, captured
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        real_err.close()
        sink.close()


def _check_writable(path: str | None) -> None:
    if path and path != "-":
        with open(path, "w"):  # created now: an unwritable path is a usage error before the run
            pass


def _check_args(args) -> str:
    """A usage error's message, or "" when the arguments are usable."""
    if args.max_examples < 1:
        return "--max-examples must be >= 1"
    if args.target and args.bundled:
        return "--bundled picks this project's losses to check; it cannot go with a TARGET"
    if not args.timeout > 0:
        return "--timeout must be > 0"
    if args.report == "-":
        return "--report needs a file path ('-' is for --json)"
    try:
        _check_writable(args.report)
        _check_writable(args.json)
    except OSError as e:
        return f"cannot write the report: {e}"
    return ""


def _targets(args):
    """(targets, skipped backends); raises TargetError."""
    if args.target is None:
        targets, skipped = bundled_targets(args.dialect, args.loss, tuple(args.bundled or BUNDLED))
        if not targets:
            raise TargetError("no bundled backend is importable: " + "; ".join(skipped))
        return targets, skipped
    return [
        load_target(
            args.target,
            args.loss or "c",
            class_index=args.targets == "class-index",
            label_weight=not args.no_label_weight,
            anchor_weights=args.weights == "per-anchor",
        )
    ], []


def _check_target(t, args):
    """One target's report, the port's output captured; raises UsageError."""
    with _captured_output() as (real_err, captured):
        progress = None if args.quiet else (lambda line: print(line, file=real_err, flush=True))
        try:
            rep = run_catalogue(
                t.make_port,
                t.loss_kind,
                target=t.name,
                dialect=args.dialect,
                max_examples=args.max_examples,
                seed=args.seed,
                large=args.large,
                timeout=args.timeout,
                first_timeout=max(FIRST_CALL_TIMEOUT, args.timeout),
                progress=progress,
            )
        except UsageError as e:
            raise UsageError(f"{t.name}: {e}") from None
        rep.output = captured()
    if t.expected_dialect is not None and rep.verdict.dialect != t.expected_dialect:
        rep.verdict.reason += f"; expected the {t.expected_dialect!r} dialect"
        rep.verdict.passed = False  # a bundled loss in the wrong dialect fails
    return rep


def _write(args, doc: dict, text: str, status: int) -> int:
    print(dumps(doc) if args.json == "-" else text)
    try:
        if args.report:
            with open(args.report, "w") as f:
                f.write(text)
        if args.json and args.json != "-":
            with open(args.json, "w") as f:
                f.write(dumps(doc))
    except OSError as e:  # checked before the run; only a disk that filled up since gets here
        print(f"ghm-conformance: error: cannot write the report: {e}", file=sys.stderr)
        return max(status, 1)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its message
        return USAGE_ERROR if e.code else 0

    def usage(message: str) -> int:
        print(f"ghm-conformance: error: {message}", file=sys.stderr)
        return USAGE_ERROR

    problem = _check_args(args)
    if problem:
        return usage(problem)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        targets, skipped = _targets(args)
        reports = [_check_target(t, args) for t in targets]
    except (TargetError, UsageError) as e:
        return usage(str(e))
    except KeyboardInterrupt:
        return usage("interrupted: no verdict")
    status = 0 if all(r.conforms(args.strict) for r in reports) else 1
    doc = to_json(reports, {t.name: t.import_line for t in targets}, status, skipped, strict=args.strict)
    return _write(args, doc, to_markdown(doc), status)


if __name__ == "__main__":
    sys.exit(main())
