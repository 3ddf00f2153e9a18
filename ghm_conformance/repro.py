"""Counterexamples that reproduce: the snippet the report prints, and ``replay``, which it calls.

The snippet holds the case exactly (float32 literals, or a compressed blob for a batch of more
than a few dozen entries, or the corpus recipe of a scale case) and replays the property's
check on it: the same runs, on fresh port instances, with every call's inputs and outputs and
the comparison that fails printed. Every random choice of the property is part of the case
(``Case.draws``), so the replay is the failing check itself, not a look-alike; the comparisons
it prints are the check's own (``outcome.py``), and the snippet exits 1 while the check fails.
"""

from __future__ import annotations

import base64
import io
import math
import zlib
from dataclasses import dataclass

import numpy as np

from .cases import Call, Case
from .outcome import Outcome, Run, raised_text

INLINE_ENTRIES = 64  # larger arrays go into a compressed blob


def _num(v) -> str:
    """A float32 as the shortest literal that round-trips, in scientific notation when it is tiny
    or huge (not 0.0000000000000000000000000043782554)."""
    v = np.float32(v)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and not 1e-4 <= abs(v) < 1e7:
        return np.format_float_scientific(v, unique=True, trim="-")
    return np.format_float_positional(v, unique=True, trim="-")


def fmt_float(v: float) -> str:
    """A float64 result (a loss, a time) for a person: 6 significant digits."""
    return "nan" if v != v else f"{v:.6g}"


def array_literal(a: np.ndarray) -> str:
    """A float32 array as the shortest exact literal: np.float32 of each number round-trips."""
    a = np.asarray(a)
    if a.ndim == 0:
        return _num(a)
    return "[" + ", ".join(array_literal(x) for x in a) + "]"


def encode(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return base64.b64encode(zlib.compress(buf.getvalue(), 9)).decode()


def blob(text: str) -> np.ndarray:
    """The array ``encode`` wrote (used by repro snippets)."""
    return np.load(io.BytesIO(zlib.decompress(base64.b64decode(text))), allow_pickle=False)


def _array_code(a: np.ndarray) -> str:
    a = np.asarray(a)
    if a.size > INLINE_ENTRIES:
        return f"blob({encode(a)!r})"
    if a.dtype.kind in "iu":
        return f"np.array({a.tolist()!r})"
    return f"f32({array_literal(a)})"


def case_code(case: Case) -> str:
    """A Python expression that rebuilds the case."""
    if case.draws.get("recipe"):
        return case.draws["recipe"]
    calls = ",\n        ".join(
        f"({_array_code(c.pred)}, {_array_code(c.target)}, {_array_code(c.label_weight)})" for c in case.calls
    )
    draws = {k: v for k, v in case.draws.items() if k != "recipe"}
    draws_code = (
        "{"
        + ", ".join(f"{k!r}: {_array_code(v) if isinstance(v, np.ndarray) else repr(v)}" for k, v in draws.items())
        + "}"
    )
    return (
        f"make_case(loss_kind={case.loss_kind!r}, bins={case.bins}, momentum={case.momentum}, mu={case.mu!r},\n"
        f"    calls=[\n        {calls},\n    ],\n    draws={draws_code})"
    )


def snippet(property_id: str, dialect: str, case: Case, import_line: str) -> str:
    """Copy-paste Python that replays the failing check and prints the disagreement."""
    needs_corpus = bool(case.draws.get("recipe"))
    imports = "from ghm_conformance.corpus import scale_case, large_case\n" if needs_corpus else ""
    return (
        f"import numpy as np\n"
        f"from ghm_conformance.repro import blob, make_case, replay\n{imports}"
        f"{import_line}\n\n"
        f"nan, inf = float('nan'), float('inf')\n"
        f"f32 = lambda a: np.array(a, dtype=np.float32)\n"
        f"case = {case_code(case)}\n"
        f"raise SystemExit(replay({property_id!r}, make_port, case, dialect={dialect!r}).exit_status)\n"
    )


def make_case(*, loss_kind, bins, momentum, mu, calls, draws=None) -> Case:
    return Case(loss_kind, bins, momentum, mu, [Call(*(np.asarray(a) for a in c)) for c in calls], dict(draws or {}))


def _short(a) -> str:
    a = np.asarray(a)
    if a.size <= 12:
        return array_literal(a) if a.dtype.kind == "f" else str(a.tolist())
    return f"<{a.dtype} array of shape {a.shape}>"


@dataclass
class Replayed:
    """What a replay found: the check's outcome (None when the port raised), and the exit status
    a script should return (1 when the check fails, so that a repro can be scripted)."""

    outcome: Outcome | None
    raised: str | None = None

    @property
    def passed(self) -> bool:
        return self.raised is None and self.outcome is not None and self.outcome.passed

    @property
    def exit_status(self) -> int:
        return 0 if self.passed else 1


def replay(property_id: str, make_port, case: Case, *, dialect: str = "paper", out=print, timeout=None) -> Replayed:
    """Run the property's check on ``case`` exactly as the kit did, print every run with the
    property's own comparison of each judged call ("MISMATCH" where it fails), and return it."""
    from .outcome import recorded_runs
    from .properties import BY_ID
    from .protocol import Clock
    from .runner import adapt, probe

    prop = BY_ID[property_id]
    port = probe(make_port, case.loss_kind, Clock(timeout))
    case = adapt(case, port)
    out(f"property {property_id}" + (f" [{dialect}]" if prop.dialect_dependent else "") + f": {prop.title}")
    out(f"case: {case.describe()}")
    outcome, started, raised = recorded_runs(lambda: prop.check(case, port, dialect))
    for r, run in enumerate(outcome.runs if outcome is not None else started):
        _print_run(r, run, {} if outcome is None else outcome.comparisons, prop.tolerance, out)
    if raised is not None:  # a crash is the disagreement
        text = raised_text(raised)
        out(f"MISMATCH: the port raised {text}")
        out(f"FAILED: the port raised {text}")
        return Replayed(None, text)
    assert outcome is not None, "recorded_runs returns the check's outcome whenever the check raised nothing"
    out(("FAILED: " + outcome.message) if not outcome.passed else "passed")
    return Replayed(outcome)


def _print_run(r: int, run: Run, comparisons: dict, tolerance: float, out) -> None:
    out(f"run {r + 1} '{run.label}' (a fresh port instance):")
    for i, c in enumerate(run.calls[: len(run.outputs) + (run.raised is not None)]):
        out(f"  call {i + 1}: pred={_short(c.pred)}, target={_short(c.target)}, label_weight={_short(c.label_weight)}")
        if i == len(run.outputs):
            out(f"    port raised {run.raised}  [MISMATCH]")
            continue
        o = run.outputs[i]
        out(f"    port returned loss={fmt_float(o.loss)}" + ("" if o.grad is None else f", grad={_short(o.grad)}"))
        cmp = comparisons.get((r, i))
        if cmp is None:
            continue
        want = cmp.expected
        out(
            f"    expected ({want.source}): loss={fmt_float(want.loss)}"
            + ("" if want.grad is None else f", grad={_short(want.grad)}")
            + f"  [{'agree' if cmp.passed else 'MISMATCH'}: relative error loss {_err(cmp.loss_error)}, "
            f"gradient {_err(cmp.grad_error)}; tolerance {tolerance:g}]"
        )


def _err(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.3g}"
