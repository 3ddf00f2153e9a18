"""Run the catalogue against a port: probe what the port supports, one Hypothesis search per
property (the fixed corpus first), the minimal counterexample of each failure, edge-only
disagreements apart, time per call, and the verdict (``verdict.py``)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, example, given, seed as hyp_seed, settings
from hypothesis.errors import HypothesisException

from ghm_args import DIALECTS

from .cases import Case, as_class_index_case
from .measure import Measurement, bundled_measurement, measure
from .properties import CATALOGUE, LARGE, NotApplicable, Outcome, Property, Run, raised_text, recorded_runs
from .protocol import Clock, Port, PortFactory, PortTimeout, call_step, takes_label_weight
from .verdict import ERROR, FAILED, NOT_APPLICABLE, PASSED, Row, Verdict, counted, decide


class UsageError(Exception):
    """The port cannot be checked as asked (e.g. a GHM-R port checked as GHM-C)."""


@dataclass
class Counterexample:
    case: Case
    outcome: Outcome


@dataclass
class PropertyResult:
    property: Property
    dialect: str | None
    status: str
    max_error: float = 0.0
    examples: int = 0  # inputs tried, shrinking included
    note: str = ""
    counterexample: Counterexample | None = None
    edge_cases: list[Counterexample] = field(default_factory=list)
    seconds: float = 0.0
    call_seconds: list[float] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    stopped: str = ""  # a call over the time budget ended the run here

    @property
    def name(self) -> str:
        return self.property.id + (f"[{self.dialect}]" if self.dialect else "")


@dataclass
class Report:
    target: str
    loss_kind: str
    verdict: Verdict
    results: list[PropertyResult]
    port: Port
    seconds: float = 0.0
    ended_early: str = ""  # why the run stopped before the last property (a timeout)
    output: str = ""  # what the port printed, captured

    def counted_rows(self) -> list[PropertyResult]:
        """Rows that count towards the exit status (the other dialect's rows only inform)."""
        return [r for r in self.results if r.dialect in (None, self.verdict.judged_in)]

    @property
    def passed(self) -> bool:
        return self.verdict.passed and not self.ended_early


class _Fail(Exception):
    pass


# ---------------------------------------------------------------- probing the port

PROBE = (np.array([[0.5, -1.0, 2.0, 0.1]], np.float32), np.array([[1.0, 0.0, 1.0, 0.0]], np.float32))


def _matches(loss: float, loss_kind: str, mu: float = 0.02) -> bool:
    import reference

    fn = reference.ghm_c if loss_kind == "c" else reference.ghm_r
    hyper = {} if loss_kind == "c" else {"mu": mu}
    return any(abs(loss - fn(*PROBE, bins=2, dialect=d, **hyper).loss) <= 1e-3 * abs(loss) + 1e-7 for d in DIALECTS)


def _raise_if_mu_mismatch(e: TypeError, loss_kind: str) -> None:
    """A factory that requires mu (checked as GHM-C) or rejects it (as GHM-R) is the other loss."""
    if "mu" in str(e):
        other = "r" if loss_kind == "c" else "c"
        raise UsageError(f"the factory {'requires' if loss_kind == 'c' else 'rejects'} mu ({e}): is it a "
                         f"GHM-{other.upper()} port? Check it with --loss {other}") from None


def probe(make_port: PortFactory, loss_kind: str, clock: Clock | None = None) -> Port:
    """What the port supports (momentum, gradient, label weight, class indices), and a usage
    error when it is plainly the other GHM loss."""
    other = "r" if loss_kind == "c" else "c"
    hyper = {} if loss_kind == "c" else {"mu": 0.02}
    port = Port(make_port, class_index=bool(getattr(make_port, "class_index", False)),
                clock=clock or Clock())
    try:
        step = make_port(bins=2, momentum=0.75, **hyper)
    except NotImplementedError as e:
        port.supports_momentum, port.momentum_note = False, f"the port does not support momentum: {e}"
    except TypeError as e:
        _raise_if_mu_mismatch(e, loss_kind)
    except (Exception, SystemExit):  # noqa: BLE001 - a crashing factory fails the properties, with its error
        pass
    try:
        step = make_port(bins=2, momentum=0.0, **hyper)
        port.label_weight = bool(getattr(make_port, "label_weight", True)) and takes_label_weight(step)
        pred, target = PROBE
        weights = np.ones_like(pred)
        if port.class_index:
            pred, target = np.concatenate([pred, -pred]), np.concatenate([target, 1 - target])
            weights = np.ones_like(pred)
            out = call_step(step, pred, target, weights, clock=Clock())
        else:
            out = call_step(step, pred, target, weights, with_label_weight=port.label_weight, clock=Clock())
    except TypeError as e:
        _raise_if_mu_mismatch(e, loss_kind)
        return port
    except (Exception, SystemExit):  # noqa: BLE001 - likewise: the properties will show the error
        return port
    port.returns_grad = out.grad is not None
    if not port.class_index and math.isfinite(out.loss) and _matches(out.loss, other) and \
            not _matches(out.loss, loss_kind):
        raise UsageError(f"the port computes GHM-{other.upper()}, not GHM-{loss_kind.upper()}, on a probe "
                         f"input: check it with --loss {other}")
    return port


# ---------------------------------------------------------------- one property

def _not_applicable(prop: Property, port: Port) -> str:
    if prop.needs_momentum and not port.supports_momentum:
        return port.momentum_note or "the port does not support momentum"
    if prop.needs_grad and not port.returns_grad:
        return "the port returns no gradient"
    if prop.needs_label_weight and not port.label_weight:
        return "the port takes no label weight"
    if port.class_index and not prop.class_index_ok:
        return "its inputs cannot be written as class indices"
    return ""


def _adapt(case: Case, port: Port) -> Case:
    return as_class_index_case(case) if port.class_index else case


def run_property(prop: Property, port: Port, loss_kind: str, dialect: str, *, max_examples: int = 30,
                 seed: int | None = None, measure_scale: bool = True) -> PropertyResult:
    name_dialect = dialect if prop.dialect_dependent else None
    why_not = _not_applicable(prop, port)
    if why_not:
        return PropertyResult(prop, name_dialect, NOT_APPLICABLE, note=why_not)
    failures: list[Counterexample] = []
    edges: list[Counterexample] = []
    errors = [0.0]
    count = [0, 0]  # inputs tried, of which only at edges
    na: list[str] = []
    timed_out: list[BaseException] = []
    first_call = len(port.clock.times)

    def attempt(case: Case | None):
        if case is None:  # the placeholder of a corpus-only property
            return
        count[0] += 1
        case = _adapt(case, port)
        try:
            out, runs, raised = recorded_runs(lambda: prop.check(case, port, dialect))
        except PortTimeout as e:
            timed_out.append(e)
            raise _Fail(str(e)) from None
        if isinstance(raised, NotApplicable):
            na.append(str(raised))
            return
        if isinstance(raised, HypothesisException):
            raise raised
        if raised is not None:  # a crashing (or exiting) port is a failing port; its runs show where
            out = Outcome(False, math.inf, f"the port raised {raised_text(raised)}", runs)
        if out.edge:
            count[1] += 1
            if len(edges) < 3:
                edges.append(Counterexample(case, out))
            return
        errors.append(out.error)
        if not out.passed:
            failures.append(Counterexample(case, out))
            raise _Fail(out.message)

    phases = [Phase.explicit] if prop.corpus_only else [Phase.explicit, Phase.generate, Phase.shrink]
    search = given(prop.strategy(loss_kind))(attempt)
    for special in reversed(prop.corpus(loss_kind)):
        search = example(special)(search)
    search = settings(max_examples=max_examples, database=None, deadline=None, derandomize=seed is None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.large_base_example],
                      phases=phases, report_multiple_bugs=False, print_blob=False)(search)
    if seed is not None:
        search = hyp_seed(seed)(search)
    start = time.perf_counter()
    status, note = PASSED, ""
    try:
        search()
    except _Fail:
        pass
    except HypothesisException as e:  # Unsatisfiable, FailedHealthCheck, Flaky, ...: no trustworthy result
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        status, note = ERROR, f"Hypothesis {type(e).__name__}: {first_line}"
    seconds = time.perf_counter() - start
    calls = port.clock.times[first_call:]
    if timed_out:
        return PropertyResult(prop, name_dialect, ERROR, math.inf, count[0], f"stopped: {timed_out[0]}",
                              seconds=seconds, call_seconds=calls, stopped=str(timed_out[0]))
    if na and not failures:
        return PropertyResult(prop, name_dialect, NOT_APPLICABLE, note=na[0], seconds=seconds, call_seconds=calls)
    if failures:
        status = FAILED
    elif status == PASSED and count[0] == 0:
        status, note = ERROR, "no input could be tried"
    max_error = max(errors + ([failures[-1].outcome.error] if failures else []))
    if edges:
        note = (note + "; " if note else "") + f"{count[1]} disagreement(s) only at region edges (not failures)"
    result = PropertyResult(prop, name_dialect, status, max_error, count[0], note,
                            failures[-1] if failures else None, edges, seconds, calls)
    if prop.corpus_only and measure_scale and status != ERROR:
        case = _adapt(prop.corpus(loss_kind)[0], port)
        try:
            result.measurements.append(measure("the port", port, case))
            bundled = bundled_measurement(case, dialect)
            if bundled is not None:
                result.measurements.append(bundled)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a measurement is information, never a failure
            result.note = (result.note + "; " if result.note else "") + f"not measured: {type(e).__name__}: {e}"
    return result


# ---------------------------------------------------------------- the whole catalogue

def run_catalogue(make_port: PortFactory, loss_kind: str, *, target: str = "port", dialect: str | None = None,
                  max_examples: int = 25, seed: int | None = None, only: tuple[str, ...] | None = None,
                  large: bool = False, timeout: float | None = None, first_timeout: float | None = None,
                  progress: Callable[[str], None] | None = None) -> Report:
    """Run every property on ``make_port`` (a GHM-C port if loss_kind == "c", GHM-R if "r").

    With ``dialect=None`` the dialect is detected: the dialect-dependent properties run in both
    dialects, and the port's dialect is the one whose reference it matches. ``timeout``: the
    longest a call may take, in seconds (``first_timeout`` for the run's first call, which may
    compile); a call over it ends the run. Raises UsageError when the port is plainly the
    other GHM loss."""
    start = time.perf_counter()
    say = progress or (lambda _: None)
    port = probe(make_port, loss_kind, Clock(timeout, first_timeout))
    props = [p for p in CATALOGUE + ((LARGE,) if large else ()) if only is None or p.id in only]
    dialects = DIALECTS if dialect is None else (dialect,)
    jobs = [(p, d) for p in props for d in (dialects if p.dialect_dependent else (dialects[0],))]
    results: list[PropertyResult] = []
    ended = ""
    for i, (prop, d) in enumerate(jobs, 1):
        label = prop.id + (f"[{d}]" if prop.dialect_dependent else "")
        result = run_property(prop, port, loss_kind, d, max_examples=max_examples, seed=seed,
                              measure_scale=d == dialects[0])
        results.append(result)
        if result.stopped:
            ended = f"the run stopped at '{label}': {result.stopped}"
            say(f"[{target}] {i}/{len(jobs)} {label}: stopped ({result.stopped})")
            break
        times = result.call_seconds
        per_call = f", {statistics.median(times) * 1e3:.3g} ms per call" if times else ""
        say(f"[{target}] {i}/{len(jobs)} {label}: {result.status} ({result.examples} inputs, "
            f"{result.seconds:.1f} s{per_call})")
    rows = [Row(r.property.id, r.dialect, r.status) for r in results]
    verdict = decide(rows, dialect)
    return Report(target, loss_kind, verdict, results, port, time.perf_counter() - start, ended)


__all__ = ["ERROR", "FAILED", "NOT_APPLICABLE", "PASSED", "Counterexample", "PropertyResult", "Report", "Run",
           "UsageError", "counted", "probe", "run_catalogue", "run_property"]
