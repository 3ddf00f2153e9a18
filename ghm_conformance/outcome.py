"""What a check produces: the runs exactly as the port received them, and one ``Comparison`` per
judged call, made by the property's own comparator. The runner, the report and the repro all
read the same comparisons; nothing compares twice."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .cases import Call, Case
from .expected import Expected
from .protocol import Port, StepOutput, call_step
from .tolerances import RTOL, grad_errors, loss_error


class NotApplicable(Exception):
    """The port does not support what a property needs (momentum, gradients, label weights)."""


@dataclass
class Run:
    """One fresh port instance and the calls it received, in order, with what it returned."""

    label: str
    calls: list[Call]
    outputs: list[StepOutput] = field(default_factory=list)
    raised: str | None = None  # what call len(outputs) raised; the calls after it were never made


@dataclass
class Comparison:
    """One call against what it should have returned: errors relative to the tolerance's scale
    (a comparison passes at <= the property's tolerance), and where it broke."""

    expected: Expected
    loss_error: float
    grad_error: float
    passed: bool
    where: str = ""  # e.g. "d loss / d pred at flat index 3 is ... but ... gives ..."


@dataclass
class Outcome:
    passed: bool
    error: float  # largest relative error seen in this case (0 when exact)
    message: str = ""
    runs: list[Run] = field(default_factory=list)
    comparisons: dict = field(default_factory=dict)  # (run, call) -> Comparison
    edge: bool = False  # the disagreement is explained by g within rounding of an edge

    @property
    def expected(self) -> dict:
        return {key: c.expected for key, c in self.comparisons.items()}


def raised_text(e: BaseException) -> str:
    """What a port raised, as the report and the repro print it."""
    return f"sys.exit({e.code!r})" if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"


# The runs a check has started, so that a port that raises is still reported with every call it
# received up to and including the one that raised (``recorded_runs``).
_STARTED: contextvars.ContextVar[list[Run] | None] = contextvars.ContextVar("ghm_started_runs", default=None)


def recorded_runs(check: Callable[[], Outcome]) -> tuple[Outcome | None, list[Run], BaseException | None]:
    """Call ``check``; return (its outcome or None, the runs it started, what it raised or None).
    Only Exception and SystemExit are caught; anything else (KeyboardInterrupt, Hypothesis's
    control flow) propagates."""
    runs: list[Run] = []
    token = _STARTED.set(runs)
    try:
        return check(), runs, None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the caller decides what a crash means
        return None, runs, e
    finally:
        _STARTED.reset(token)


def run_port(case: Case, port: Port, label: str, calls: list[Call] | None = None) -> Run:
    """``calls`` (default: the case's) on one fresh port instance, in order."""
    run = Run(label, list(case.calls if calls is None else calls))
    started = _STARTED.get()
    if started is not None:
        started.append(run)
    try:
        step = port.instance(bins=case.bins, momentum=case.momentum, **case.hyper)
        for c in run.calls:
            run.outputs.append(
                call_step(step, c.pred, c.target, c.label_weight, with_label_weight=port.label_weight, clock=port.clock)
            )
    except (Exception, SystemExit) as e:  # recorded for the report, then raised on
        run.raised = raised_text(e)
        raise
    return run


def compare(got: StepOutput, want: Expected, tol: float = RTOL) -> Comparison:
    """The loss, and the gradient entry by entry when the port returns one (spec.md 9)."""
    e_loss = loss_error(got.loss, want.loss, want.loss_scale)
    per_entry = (
        None
        if got.grad is None or want.grad is None or want.grad.size == 0
        else grad_errors(got.grad, want.grad, want.grad_scale)
    )
    e_grad = 0.0 if per_entry is None else float(np.max(per_entry))
    where = ""
    if e_loss > tol:
        where = f"loss {got.loss!r} but {want.source} gives {want.loss!r}"
    elif e_grad > tol:
        assert per_entry is not None and got.grad is not None and want.grad is not None, (
            "a gradient error above the tolerance comes from comparing two gradients"
        )
        k = int(np.argmax(per_entry))
        where = (
            f"d loss / d pred at flat index {k} is {got.grad.ravel()[k]!r} "
            f"but {want.source} gives {want.grad.ravel()[k]!r}"
        )
    return Comparison(want, e_loss, e_grad, e_loss <= tol and e_grad <= tol, where)


def judge(runs: list[Run], expected: dict, tol: float = RTOL) -> Outcome:
    """Compare each (run, call) in ``expected`` with what the port returned. The message names
    the first call that fails."""
    comparisons = {key: compare(runs[key[0]].outputs[key[1]], want, tol) for key, want in expected.items()}
    return outcome_of(runs, comparisons)


def outcome_of(runs: list[Run], comparisons: dict) -> Outcome:
    worst = max([max(c.loss_error, c.grad_error) for c in comparisons.values()] or [0.0])
    failing = [(key, c) for key, c in comparisons.items() if not c.passed]
    message = ""
    if failing:
        (r, i), c = failing[0]
        message = (f"run '{runs[r].label}', call {i + 1}: " if len(runs) > 1 else f"call {i + 1}: ") + c.where
    return Outcome(not failing, worst if math.isfinite(worst) else math.inf, message, runs, comparisons)
