"""Run the catalogue against a port: probe what the port supports, one Hypothesis search per
property (the fixed corpus first), the minimal counterexample of each failure, edge-only
disagreements apart, time per call, and the verdict (``verdict.py``)."""

from __future__ import annotations

import builtins
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import seed as hyp_seed
from hypothesis.errors import HypothesisException

from ghm_args import DIALECTS

from .cases import Case, as_anchor_weight_case, as_class_index_case
from .input_class import classify, off_class
from .measure import Measurement, bundled_measurement, measure
from .outcome import NotApplicable, Outcome, Run, raised_text, recorded_runs
from .properties import CATALOGUE, LARGE, Property
from .protocol import Clock, Port, PortFactory, PortTimeout, call_step, takes_label_weight
from .verdict import ERROR, FAILED, NOT_APPLICABLE, PASSED, ROBUSTNESS, Row, Verdict, counted, decide

COST_PROPERTIES = ("scale", "large")  # the calls at scale whose cost the report measures


class UsageError(Exception):
    """The port cannot be checked as asked (e.g. a factory that rejects mu, checked as GHM-R)."""


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
    input_class: str = ""  # the narrow input class of the failure (input_class.py), "" when none
    class_confirmed: bool = False  # the failure is shown to be confined to that class

    @builtins.property  # the field ``property`` shadows the builtin in this class body for type checkers
    def name(self) -> str:
        return self.property.id + (f"[{self.dialect}]" if self.dialect else "")

    def row(self) -> Row:
        note = ""
        if self.status == FAILED and self.property.kind == ROBUSTNESS and self.property.describe:
            note = self.property.describe(self.counterexample.outcome if self.counterexample else None)
        return Row(
            self.property.id,
            self.dialect,
            self.status,
            self.property.kind,
            note,
            self.input_class,
            self.class_confirmed,
        )


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
        """Rows that count towards the verdict (the other dialect's rows only inform)."""
        return [r for r in self.results if r.dialect in (None, self.verdict.judged_in)]

    def conforms(self, strict: bool = False) -> bool:
        """The exit status's question: no fault (with ``strict``, no note either), a whole run."""
        return self.verdict.conforms(strict) and not self.ended_early

    @property
    def passed(self) -> bool:
        return self.conforms()


# ---------------------------------------------------------------- probing the port

PROBE = (np.array([[0.5, -1.0, 2.0, 0.1]], np.float32), np.array([[1.0, 0.0, 1.0, 0.0]], np.float32))


def _matches(loss: float, loss_kind: str, mu: float = 0.02) -> bool:
    import reference

    def reference_loss(dialect: str) -> float:  # reduction "mean": a float
        if loss_kind == "c":
            return float(reference.ghm_c(*PROBE, bins=2, dialect=dialect).loss)
        return float(reference.ghm_r(*PROBE, bins=2, dialect=dialect, mu=mu).loss)

    return any(abs(loss - reference_loss(d)) <= 1e-3 * abs(loss) + 1e-7 for d in DIALECTS)


def _raise_if_mu_mismatch(e: TypeError, loss_kind: str) -> None:
    """A factory that requires mu (checked as GHM-C) or rejects it (as GHM-R) is the other loss:
    the kit cannot even call it as asked."""
    if "mu" in str(e):
        other = "r" if loss_kind == "c" else "c"
        raise UsageError(
            f"the factory {'requires' if loss_kind == 'c' else 'rejects'} mu ({e}): is it a "
            f"GHM-{other.upper()} port? Check it with --loss {other}"
        ) from None


def _probe_momentum(port: Port, hyper: dict, loss_kind: str) -> None:
    try:
        port.make_port(bins=2, momentum=0.75, **hyper)
    except NotImplementedError as e:
        port.supports_momentum, port.momentum_note = False, f"the port does not support momentum: {e}"
    except TypeError as e:
        _raise_if_mu_mismatch(e, loss_kind)
    except (Exception, SystemExit):  # noqa: BLE001 - a crashing factory fails the properties, with its error
        pass


def probe(make_port: PortFactory, loss_kind: str, clock: Clock | None = None) -> Port:
    """What the port supports (momentum, gradient, label weight, class indices), and a hint when
    its values look like the other GHM loss's. Raises UsageError only when the factory cannot be
    called as asked; a port whose values are wrong is judged, never refused."""
    other = "r" if loss_kind == "c" else "c"
    hyper = {} if loss_kind == "c" else {"mu": 0.02}
    port = Port(
        make_port,
        class_index=bool(getattr(make_port, "class_index", False)),
        anchor_weights=bool(getattr(make_port, "anchor_weights", False)),
        clock=clock or Clock(),
        framework=getattr(make_port, "framework", None),
    )
    _probe_momentum(port, hyper, loss_kind)
    try:
        step = make_port(bins=2, momentum=0.0, **hyper)
        port.label_weight = bool(getattr(make_port, "label_weight", True)) and takes_label_weight(step)
        pred, target = PROBE
        if port.class_index:
            pred, target = np.concatenate([pred, -pred]), np.concatenate([target, 1 - target])
        out = call_step(
            step,
            pred,
            target,
            np.ones_like(pred),
            with_label_weight=port.label_weight or port.class_index,
            clock=Clock(),
        )
    except TypeError as e:
        _raise_if_mu_mismatch(e, loss_kind)
        return port
    except (Exception, SystemExit):  # noqa: BLE001 - likewise: the properties will show the error
        return port
    port.returns_grad = out.grad is not None
    if (
        not port.class_index
        and math.isfinite(out.loss)
        and _matches(out.loss, other)
        and not _matches(out.loss, loss_kind)
    ):
        port.hint = (
            f"on a probe input the port's values are closer to GHM-{other.upper()} than to "
            f"GHM-{loss_kind.upper()}: did you mean --loss {other}?"
        )
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


def adapt(case: Case, port: Port) -> Case:
    """The case as the port takes it (class indices for a class-index port)."""
    if port.class_index:
        return as_class_index_case(case)
    return as_anchor_weight_case(case) if port.anchor_weights else case


class _Stop(Exception):
    """Ends a property's search: a failure was found (shrinking follows), or a call timed out."""


@dataclass
class _Search:
    """The state of one property's search, filled in by ``attempt`` as Hypothesis calls it."""

    prop: Property
    port: Port
    dialect: str
    failures: list[Counterexample] = field(default_factory=list)
    edges: list[Counterexample] = field(default_factory=list)
    errors: list[float] = field(default_factory=lambda: [0.0])
    tried: int = 0
    at_edges: int = 0
    not_applicable: str = ""
    timed_out: str = ""

    def attempt(self, case: Case | None) -> None:
        if case is None:  # the placeholder of a corpus-only property
            return
        self.tried += 1
        case = adapt(case, self.port)
        try:
            out, runs, raised = recorded_runs(lambda: self.prop.check(case, self.port, self.dialect))
        except PortTimeout as e:
            self.timed_out = str(e)
            raise _Stop(str(e)) from None
        if isinstance(raised, NotApplicable):
            self.not_applicable = self.not_applicable or str(raised)
            return
        if isinstance(raised, HypothesisException):
            raise raised
        if raised is not None:  # a crashing (or exiting) port is a failing port; its runs show where
            out = Outcome(False, math.inf, f"the port raised {raised_text(raised)}", runs)
        assert out is not None, "recorded_runs returns the check's outcome whenever the check raised nothing"
        if out.edge:
            self.at_edges += 1
            if len(self.edges) < 3:
                self.edges.append(Counterexample(case, out))
            return
        self.errors.append(out.error)
        if not out.passed:
            self.failures.append(Counterexample(case, out))
            raise _Stop(out.message)

    def run(self, loss_kind: str, max_examples: int, seed: int | None) -> str:
        """Hypothesis over the property's strategy, its corpus first; returns an error note or ""."""
        prop = self.prop
        search = given(prop.strategy(loss_kind))(self.attempt)
        for special in reversed(prop.corpus(loss_kind)):
            search = example(special)(search)
        search = settings(
            max_examples=max_examples,
            database=None,
            deadline=None,
            derandomize=seed is None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
            phases=[Phase.explicit] if prop.corpus_only else [Phase.explicit, Phase.generate, Phase.shrink],
            report_multiple_bugs=False,
            print_blob=False,
        )(search)
        if seed is not None:
            search = hyp_seed(seed)(search)
        try:
            search()
        except _Stop:
            pass
        except HypothesisException as e:  # Unsatisfiable, FailedHealthCheck, Flaky...: no trustworthy result
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return f"Hypothesis {type(e).__name__}: {first_line}"
        return ""


def _result(
    search: _Search, name_dialect: str | None, error_note: str, seconds: float, calls: list[float]
) -> PropertyResult:
    prop = search.prop
    if search.timed_out:
        return PropertyResult(
            prop,
            name_dialect,
            ERROR,
            math.inf,
            search.tried,
            f"stopped: {search.timed_out}",
            seconds=seconds,
            call_seconds=calls,
            stopped=search.timed_out,
        )
    if search.not_applicable and not search.failures:
        return PropertyResult(
            prop, name_dialect, NOT_APPLICABLE, note=search.not_applicable, seconds=seconds, call_seconds=calls
        )
    status, note = (ERROR, error_note) if error_note else (PASSED, "")
    if search.failures:
        status = FAILED
    elif status == PASSED and search.tried == 0:
        status, note = ERROR, "no input could be tried"
    max_error = max(search.errors + ([search.failures[-1].outcome.error] if search.failures else []))
    if search.edges:
        note = (note + "; " if note else "") + f"{search.at_edges} disagreement(s) only at region edges (not failures)"
    return PropertyResult(
        prop,
        name_dialect,
        status,
        max_error,
        search.tried,
        note,
        search.failures[-1] if search.failures else None,
        search.edges,
        seconds,
        calls,
    )


def _measure_scale(result: PropertyResult, port: Port, loss_kind: str, dialect: str) -> None:
    """Time and peak memory of one call at the corpus size, beside the bundled loss: information,
    never a failure."""
    case = adapt(result.property.corpus(loss_kind)[0], port)
    try:
        result.measurements.append(measure("the port", port, case))
        bundled = bundled_measurement(case, dialect, port.framework, port.label_weight)
        if bundled is not None:
            result.measurements.append(bundled)
    except (Exception, SystemExit) as e:  # noqa: BLE001
        result.note = (result.note + "; " if result.note else "") + f"not measured: {type(e).__name__}: {e}"


def _passes_off_class(
    prop: Property, move, port: Port, loss_kind: str, dialect: str, max_examples: int, seed: int | None
) -> bool:
    """The property's whole search again with every input moved out of the class (``move``): a port
    wrong only in that class passes it; one wrong elsewhere too (a port wrong *near* edges,
    floor(g (M - 1e-4)); a dialect that differs on most inputs) does not."""
    moved = Property(
        prop.id,
        prop.title,
        lambda k: prop.strategy(k).map(move),
        prop.check,
        corpus=lambda k: [move(c) for c in prop.corpus(k)],
        dialect_dependent=prop.dialect_dependent,
        tolerance=prop.tolerance,
    )
    search = _Search(moved, port, dialect)
    return not search.run(loss_kind, max_examples, seed) and not search.failures and not search.timed_out


def run_property(
    prop: Property,
    port: Port,
    loss_kind: str,
    dialect: str,
    *,
    max_examples: int = 30,
    seed: int | None = None,
    measure_scale: bool = True,
) -> PropertyResult:
    name_dialect = dialect if prop.dialect_dependent else None
    why_not = _not_applicable(prop, port)
    if why_not:
        return PropertyResult(prop, name_dialect, NOT_APPLICABLE, note=why_not)
    first_call = len(port.clock.times)
    start = time.perf_counter()
    search = _Search(prop, port, dialect)
    error_note = search.run(loss_kind, max_examples, seed)
    result = _result(search, name_dialect, error_note, time.perf_counter() - start, port.clock.times[first_call:])
    if result.status == FAILED and result.counterexample is not None:
        ce = result.counterexample
        result.input_class, result.class_confirmed = classify(
            prop.id, ce.case, ce.outcome, port, dialect, prop.tolerance
        )
        if result.class_confirmed and prop.id == "value":
            result.class_confirmed = _passes_off_class(
                prop, off_class(result.input_class), port, loss_kind, dialect, max_examples, seed
            )
        if result.input_class and result.class_confirmed:
            result.note = (result.note + "; " if result.note else "") + f"only for {result.input_class}"
    if prop.id in COST_PROPERTIES and measure_scale and result.status != ERROR:
        _measure_scale(result, port, loss_kind, dialect)
    return result


# ---------------------------------------------------------------- the whole catalogue


def _jobs(large: bool, only: tuple[str, ...] | None, dialects: tuple[str, ...]) -> list[tuple[Property, str]]:
    props = [p for p in CATALOGUE + ((LARGE,) if large else ()) if only is None or p.id in only]
    return [(p, d) for p in props for d in (dialects if p.dialect_dependent else (dialects[0],))]


def progress_line(result: PropertyResult, forced: str | None = None) -> str:
    """A property's row as one line, in words that hold whatever the verdict turns out to be: a
    reference row of a detected dialect says whether the port agrees with that dialect's reference
    (the verdict, printed last, says which dialect is the port's); other rows say passed / failed /
    note / not applicable / error, as the report's table does."""
    times = result.call_seconds
    per_call = f", {statistics.median(times) * 1e3:.3g} ms per call" if times else ""
    return f"{progress_status(result, forced)} ({result.examples} inputs, {result.seconds:.1f} s{per_call})"


def progress_status(result: PropertyResult, forced: str | None = None) -> str:
    if result.dialect is not None and forced is None and result.status in (PASSED, FAILED):
        word = "agrees with" if result.status == PASSED else "differs from"
        return f"{word} the {result.dialect} reference" + (f" ({result.note})" if result.class_confirmed else "")
    if result.status == FAILED and result.property.kind == ROBUSTNESS:
        return "note"
    return result.status + (f" ({result.note})" if result.status == FAILED and result.class_confirmed else "")


def status_text(result: PropertyResult, judged_in: str | None) -> str:
    if result.dialect is not None and judged_in is not None and result.dialect != judged_in:
        return {PASSED: "other dialect: agrees", FAILED: "other dialect: differs"}.get(
            result.status, f"other dialect: {result.status}"
        )
    if result.status == FAILED and result.property.kind == ROBUSTNESS:
        return "note"
    return result.status


def run_catalogue(
    make_port: PortFactory,
    loss_kind: str,
    *,
    target: str = "port",
    dialect: str | None = None,
    max_examples: int = 25,
    seed: int | None = None,
    only: tuple[str, ...] | None = None,
    large: bool = False,
    timeout: float | None = None,
    first_timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run every property on ``make_port`` (a GHM-C port if loss_kind == "c", GHM-R if "r").

    With ``dialect=None`` the dialect is detected: the dialect-dependent properties run in both
    dialects, and the port's dialect is the one whose reference it matches. ``timeout``: the
    longest a call may take, in seconds (``first_timeout`` for the run's first call, which may
    compile); a call over it ends the run. Raises UsageError only when the factory cannot be
    called as asked (it rejects or requires mu)."""
    start = time.perf_counter()
    say = progress or (lambda _: None)
    port = probe(make_port, loss_kind, Clock(timeout, first_timeout))
    if port.hint:
        say(f"[{target}] hint: {port.hint}")
    dialects = DIALECTS if dialect is None else (dialect,)
    jobs = _jobs(large, only, dialects)
    results: list[PropertyResult] = []
    ended = ""
    for i, (prop, d) in enumerate(jobs, 1):
        result = run_property(
            prop, port, loss_kind, d, max_examples=max_examples, seed=seed, measure_scale=d == dialects[0]
        )
        results.append(result)
        if result.stopped:
            ended = f"the run stopped at '{result.name}': {result.stopped}"
            say(f"[{target}] {i}/{len(jobs)} {result.name}: stopped ({result.stopped})")
            break
        say(f"[{target}] {i}/{len(jobs)} {result.name}: {progress_line(result, dialect)}")
    verdict = decide([r.row() for r in results], dialect)
    say(f"[{target}] verdict: {verdict.summary}")
    return Report(target, loss_kind, verdict, results, port, time.perf_counter() - start, ended)


__all__ = [
    "ERROR",
    "FAILED",
    "NOT_APPLICABLE",
    "PASSED",
    "Counterexample",
    "PropertyResult",
    "Report",
    "Run",
    "UsageError",
    "adapt",
    "counted",
    "probe",
    "progress_line",
    "progress_status",
    "run_catalogue",
    "run_property",
    "status_text",
]
