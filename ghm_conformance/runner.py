"""Run the catalogue against a port: one Hypothesis search per property, the minimal
counterexample of each failure, the edge-only disagreements apart, and the dialect verdict."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed as hyp_seed, settings
from hypothesis.errors import HypothesisException

from reference import DIALECTS

from .cases import Case
from .properties import CATALOGUE, NotApplicable, Outcome, Property
from .protocol import PortFactory, call_step

PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not applicable"


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

    @property
    def name(self) -> str:
        return self.property.id + (f"[{self.dialect}]" if self.dialect else "")


@dataclass
class Report:
    target: str
    loss: str
    verdict: str
    verdict_reason: str
    results: list[PropertyResult]
    dialect: str | None  # the dialect the dialect-dependent rows are judged in (the closest if none matches)
    matched: bool = False  # the port matches that dialect's reference ('value' passes)
    seconds: float = 0.0

    def deciding(self) -> list[PropertyResult]:
        """Rows that count towards the exit status (the other dialect's rows only inform)."""
        return [r for r in self.results if r.dialect in (None, self.dialect)]

    @property
    def passed(self) -> bool:
        return self.matched and all(r.status != FAILED for r in self.deciding())


class _Fail(Exception):
    pass


def _probe(make_port: PortFactory, loss: str, *, momentum: float) -> tuple[bool, bool, str]:
    """(supported, returns_grad, why-not) for a tiny call with this momentum."""
    hyper = {} if loss == "c" else {"mu": 0.02}
    try:
        step = make_port(bins=2, momentum=momentum, **hyper)
    except NotImplementedError as e:
        return False, False, f"the port does not support momentum={momentum}: {e}"
    except Exception:  # noqa: BLE001 - a crashing factory fails the properties, with its error
        return True, True, ""
    x = np.array([[0.5, -1.0]], np.float32)
    t = np.array([[1.0, 0.0]], np.float32)
    try:
        out = call_step(step, x, t, np.ones_like(x))
    except Exception:  # noqa: BLE001 - likewise: the properties will show the error
        return True, True, ""
    return True, out.grad is not None, ""


def run_property(prop: Property, make_port: PortFactory, loss: str, dialect: str, *,
                 max_examples: int = 30, seed: int | None = None, returns_grad: bool = True) -> PropertyResult:
    name_dialect = dialect if prop.dialect_dependent else None
    if prop.needs_grad and not returns_grad:
        return PropertyResult(prop, name_dialect, NOT_APPLICABLE, note="the port returns no gradient")
    failures: list[Counterexample] = []
    edges: list[Counterexample] = []
    errors = [0.0]
    count = [0, 0]  # inputs tried, of which only at edges
    na: list[str] = []

    @settings(max_examples=max_examples, database=None, deadline=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              report_multiple_bugs=False, print_blob=False)
    @given(prop.strategy(loss))
    def search(case: Case):
        count[0] += 1
        try:
            out = prop.check(case, make_port, dialect)
        except NotApplicable as e:
            na.append(str(e))
            return
        except HypothesisException:
            raise
        except Exception as e:  # noqa: BLE001 - a crashing port is a failing port
            out = Outcome(False, math.inf, f"the port raised {type(e).__name__}: {e}")
        if out.edge:
            count[1] += 1
            if len(edges) < 3:
                edges.append(Counterexample(case, out))
            return
        errors.append(out.error)
        if not out.ok:
            failures.append(Counterexample(case, out))
            raise _Fail(out.message)

    if seed is not None:
        search = hyp_seed(seed)(search)
    start = time.perf_counter()
    note = ""
    try:
        search()
    except _Fail:
        pass
    except HypothesisException as e:  # e.g. Flaky: the port answered differently on replay
        note = f"Hypothesis: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    seconds = time.perf_counter() - start
    if na and not failures:
        return PropertyResult(prop, name_dialect, NOT_APPLICABLE, note=na[0], seconds=seconds)
    status = FAILED if failures else PASSED
    max_error = max(errors)
    if failures:
        max_error = max(max_error, failures[-1].outcome.error)
    if edges:
        note = (note + "; " if note else "") + f"{count[1]} disagreement(s) only at region edges (not failures)"
    return PropertyResult(prop, name_dialect, status, max_error, count[0], note,
                          failures[-1] if failures else None, edges, seconds)


def run_catalogue(make_port: PortFactory, loss: str, *, target: str = "port", dialect: str | None = None,
                  max_examples: int = 30, seed: int | None = None,
                  only: tuple[str, ...] | None = None,
                  progress: Callable[[str], None] | None = None) -> Report:
    """Run every property on ``make_port`` (a GHM-C port if loss == "c", GHM-R if "r").

    With ``dialect=None`` the dialect is detected: the dialect-dependent properties run in both
    dialects, and the port's dialect is the one whose reference it matches.
    """
    start = time.perf_counter()
    say = progress or (lambda _: None)
    supported_m, _, why_m = _probe(make_port, loss, momentum=0.75)
    _, returns_grad, _ = _probe(make_port, loss, momentum=0.0)
    props = [p for p in CATALOGUE if only is None or p.id in only]
    dialects = DIALECTS if dialect is None else (dialect,)
    jobs = [(p, d) for p in props for d in (dialects if p.dialect_dependent else (dialects[0],))]
    results = []
    for i, (prop, d) in enumerate(jobs, 1):
        label = prop.id + (f"[{d}]" if prop.dialect_dependent else "")
        say(f"[{target}] {i}/{len(jobs)} {label} ...")
        if prop.needs_momentum and not supported_m:
            results.append(PropertyResult(prop, d if prop.dialect_dependent else None, NOT_APPLICABLE, note=why_m))
            continue
        results.append(run_property(prop, make_port, loss, d, max_examples=max_examples, seed=seed,
                                    returns_grad=returns_grad))
    verdict, reason, chosen, matched = _verdict(results, dialect)
    return Report(target, loss, verdict, reason, results, chosen, matched, time.perf_counter() - start)


def _verdict(results: list[PropertyResult], forced: str | None) -> tuple[str, str, str, bool]:
    """(verdict, why, dialect to judge the dialect-dependent rows in, matched)."""
    by = {(r.property.id, r.dialect): r for r in results}
    candidates = DIALECTS if forced is None else (forced,)

    def status(pid, d):
        r = by.get((pid, d))
        return None if r is None else r.status

    def passes(d):
        return sum(r.status == PASSED for r in results if r.dialect == d)

    matches = [d for d in candidates if status("value", d) == PASSED]
    if not matches:
        closest = max(candidates, key=passes)  # report its failures: the most useful comparison
        tried = " or ".join(candidates)
        return "neither", f"'value' fails against the {tried} reference; failures shown against {closest!r}", closest, False
    if len(matches) == 2:  # 'value' could not tell them apart: let the other reference rows decide
        matches = sorted(matches, key=passes, reverse=True)
    d = matches[0]
    momentum_rows = [status(p, d) for p in ("ema", "ema_empty")]
    if FAILED in momentum_rows:
        return f"{d} (without momentum only)", f"'value[{d}]' passes but an EMA property fails", d, True
    if NOT_APPLICABLE in momentum_rows:
        return f"{d} (momentum not supported by the port)", f"'value[{d}]' passes; EMA properties not applicable", d, True
    return d, f"'value[{d}]', 'ema[{d}]' and 'ema_empty[{d}]' pass", d, True
