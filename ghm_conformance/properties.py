"""The property catalogue: what every GHM port must satisfy, each property judging one thing,
written once against the port protocol so it checks the reference, the bundled losses and any
third-party port alike.

A check takes a ``Case`` (every random choice already drawn into it), runs the port on fresh
instances and returns an ``Outcome``: the runs exactly as the port received them (after the
property's transformation), what each call should have returned, and the verdict. Replaying a
check on the same case (``ghm_conformance.repro``) repeats the same runs.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from . import cases as cs
from . import corpus
from .cases import Call, Case
from .expected import Expected, edge_explains, plain_mean, reference_values, zero
from .protocol import Port, StepOutput, call_step
from .tolerances import EPS32, FD_RTOL, RTOL, grad_errors, loss_error


class NotApplicable(Exception):
    """The port does not support what a property needs (momentum, gradients, label weights)."""


@dataclass
class Run:
    """One fresh port instance and the calls it received, in order, with what it returned."""

    label: str
    calls: list[Call]
    outputs: list[StepOutput] = field(default_factory=list)
    raised: str | None = None  # what call len(outputs) raised; the calls after it were never made


def raised_text(e: BaseException) -> str:
    """What a port raised, as the report and the repro print it."""
    return f"sys.exit({e.code!r})" if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"


# The runs a check has started, so that a port that raises is still reported with every call it
# received up to and including the one that raised (``recorded_runs``).
_STARTED: contextvars.ContextVar[list[Run] | None] = contextvars.ContextVar("ghm_started_runs", default=None)


def recorded_runs(check: Callable[[], "Outcome"]) -> tuple["Outcome | None", list[Run], BaseException | None]:
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


@dataclass
class Outcome:
    passed: bool
    error: float  # largest relative error seen in this case (0 when exact)
    message: str = ""
    runs: list[Run] = field(default_factory=list)
    expected: dict = field(default_factory=dict)  # (run, call) -> Expected, for the report
    edge: bool = False  # the disagreement is explained by g within rounding of an edge


@dataclass(frozen=True)
class Property:
    id: str
    title: str
    strategy: Callable[[str], st.SearchStrategy]
    check: Callable[[Case, Port, str], Outcome]
    corpus: Callable[[str], list[Case]] = lambda loss_kind: []
    dialect_dependent: bool = False
    needs_momentum: bool = False
    needs_grad: bool = False
    needs_label_weight: bool = False
    class_index_ok: bool = True  # its cases keep their meaning with one-hot rows (class-index ports)
    corpus_only: bool = False  # no random search: the corpus is the whole input
    tolerance: float = RTOL


# ---------------------------------------------------------------- running the port and judging

def run_port(case: Case, port: Port, label: str, calls: list[Call] | None = None) -> Run:
    """``calls`` (default: the case's) on one fresh port instance, in order."""
    run = Run(label, list(case.calls if calls is None else calls))
    started = _STARTED.get()
    if started is not None:
        started.append(run)
    try:
        step = port.instance(bins=case.bins, momentum=case.momentum, **case.hyper)
        for c in run.calls:
            run.outputs.append(call_step(step, c.pred, c.target, c.label_weight,
                                         with_label_weight=port.label_weight, clock=port.clock))
    except (Exception, SystemExit) as e:  # recorded for the report, then raised on
        run.raised = raised_text(e)
        raise
    return run


def judge(runs: list[Run], expected: dict, tol: float = RTOL) -> Outcome:
    """Compare each (run, call) in ``expected`` with what the port returned: the loss, and the
    gradient when the port returns one. The message names the first call that fails."""
    worst, message = 0.0, ""
    for (r, i), want in expected.items():
        got = runs[r].outputs[i]
        e_loss = loss_error(got.loss, want.loss, want.loss_scale)
        per_entry = None if got.grad is None or want.grad is None or want.grad.size == 0 else \
            grad_errors(got.grad, want.grad, want.grad_scale)
        e_grad = 0.0 if per_entry is None else float(np.max(per_entry))
        worst = max(worst, e_loss, e_grad)
        if message:
            continue
        where = f"run '{runs[r].label}', call {i + 1}" if len(runs) > 1 else f"call {i + 1}"
        if e_loss > tol:
            message = f"{where}: loss {got.loss!r} but {want.source} gives {want.loss!r}"
        elif e_grad > tol:
            k = int(np.argmax(per_entry))
            message = (f"{where}: d loss / d pred at flat index {k} is {got.grad.ravel()[k]!r} "
                       f"but {want.source} gives {want.grad.ravel()[k]!r}")
    return Outcome(worst <= tol, worst, message, runs, expected)


def _derived(out: StepOutput, source: str, grad=None, like: Expected | None = None) -> Expected:
    """An expectation taken from another run's output (a metamorphic relation), with the
    rounding allowance of the reference on that input when given."""
    return Expected(out.loss, grad if grad is not None else out.grad, source,
                    like.loss_scale if like else 0.0, like.grad_scale if like else None)


def _allowance(case: Case, call: Call | None = None) -> Expected:
    """The rounding allowance of a metamorphic comparison on ``call`` (default: the case's): two
    float32 runs of the port may differ by what each may be off the reference; mmdet's betas are
    the larger (n <= M), so its scales."""
    calls = case.calls if call is None else [call]
    return reference_values(Case(case.loss_kind, case.bins, 0.0, case.mu, calls), "mmdet")[0]


# ---------------------------------------------------------------- checks

def check_reference_value(case: Case, port: Port, dialect: str) -> Outcome:
    run = run_port(case, port, "calls")
    want = {(0, i): w for i, w in enumerate(reference_values(case, dialect))}
    out = judge([run], want)
    if not out.passed and case.momentum == 0.0 and len(case.calls) == 1:
        got = run.outputs[0]
        if edge_explains(case, dialect, got.loss, got.grad):
            out.edge = True
            out.message += " (explained by a g within rounding of a region edge)"
    return out


def check_ema_after_empty_calls(case: Case, port: Port, dialect: str) -> Outcome:
    """Only the calls that hold valid entries are judged: they show the state each fully masked
    call left behind. What the empty call itself returns is all_masked's business."""
    run = run_port(case, port, "calls")
    want = {(0, i): w for i, (c, w) in enumerate(zip(case.calls, reference_values(case, dialect)))
            if np.any(c.label_weight > 0)}
    return judge([run], want)


def check_mean_equivalent(case: Case, port: Port, dialect: str) -> Outcome:
    run = run_port(case, port, "calls")
    return judge([run], {(0, i): plain_mean(case, c) for i, c in enumerate(case.calls)})


def check_permutation(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    order = case.draws["permutation"]
    moved = Call(*(a.reshape(-1)[order].reshape(a.shape) for a in (c.pred, c.target, c.label_weight)))
    base, other = run_port(case, port, "batch"), run_port(case, port, "permuted batch", [moved])
    want_grad = None if base.outputs[0].grad is None else base.outputs[0].grad.reshape(-1)[order].reshape(c.pred.shape)
    want = _derived(base.outputs[0], "the same port on the unpermuted batch (permuted)", want_grad, _allowance(case))
    return judge([base, other], {(1, 0): want})


def check_duplication(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    doubled = Call(*(np.concatenate([a, a]) for a in (c.pred, c.target, c.label_weight)))
    base, other = run_port(case, port, "batch"), run_port(case, port, "batch twice", [doubled])
    g = base.outputs[0].grad
    want_grad = None if g is None else np.concatenate([g, g]) / 2.0
    want = _derived(base.outputs[0], "the same port on the single batch (each copy's gradient halved)", want_grad,
                    _allowance(case, doubled))
    return judge([base, other], {(1, 0): want})


def check_masked_inert(case: Case, port: Port, dialect: str) -> Outcome:
    """Masked entries are not counted in N nor in the histogram, their values are never read,
    and their gradient is 0: the batch gives what its valid entries alone give."""
    c = case.calls[0]
    masked = c.label_weight == 0
    valid = ~masked
    scrambled = Call(c.pred.copy(), c.target.copy(), c.label_weight)
    scrambled.pred[masked] = np.resize(case.draws["masked_pred"], int(masked.sum()))
    scrambled.target[masked] = np.resize(case.draws["masked_target"], int(masked.sum()))
    if c.pred.ndim == 2 and np.all(c.label_weight == c.label_weight[:, :1]):  # whole rows masked: keep rows
        rows = c.label_weight[:, 0] > 0
        alone = Call(*(a[rows] for a in (c.pred, c.target, c.label_weight)))
    else:
        alone = Call(*(a[valid].reshape(-1, 1) for a in (c.pred, c.target, c.label_weight)))
    runs = [run_port(case, port, "valid entries alone", [alone]), run_port(case, port, "batch with masked entries"),
            run_port(case, port, "masked entries holding NaN/Inf/junk", [scrambled])]
    solo = runs[0].outputs[0]
    grad = None
    if solo.grad is not None:
        grad = np.zeros(c.pred.shape)
        grad[valid] = solo.grad.ravel()
    want = _derived(solo, "the same port on the valid entries alone (masked gradients 0)", grad, _allowance(case))
    return judge(runs, {(1, 0): want, (2, 0): want})


def check_weight_is_mask(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    scaled = Call(c.pred, c.target, case.draws["weights"])
    runs = [run_port(case, port, "label weights 0/1"), run_port(case, port, "other positive weights", [scaled])]
    return judge(runs, {(1, 0): _derived(runs[0].outputs[0], "the same port with every positive weight 1",
                                         like=_allowance(case))})


def check_all_masked(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    empty = Call(c.pred, c.target, np.zeros_like(c.label_weight))
    run = run_port(case, port, "every entry masked", [empty])
    return judge([run], {(0, 0): zero(empty)})


def check_finite_differences(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    base = run_port(case, port, "batch")
    if base.outputs[0].grad is None:
        raise NotApplicable("the port returns no gradient")
    analytic = base.outputs[0].grad.ravel()
    g = cs.gradient_norm(case.loss_kind, c.pred, c.target, case.mu).ravel()
    dist = np.minimum(g * case.bins % 1.0, 1.0 - g * case.bins % 1.0) / case.bins
    slope = 0.25 if case.loss_kind == "c" else 1.0 / case.mu  # bounds on |dg/dpred|
    fraction = case.draws.get("step_fraction", 0.5)
    worst, runs, fd = 0.0, [base], np.zeros(c.pred.size)
    for k in range(c.pred.size):
        h = min(1e-2, fraction * dist[k] / slope) if case.bins > 1 else 1e-2
        plus, minus = c.pred.copy().ravel(), c.pred.copy().ravel()
        plus[k] += np.float32(h)
        minus[k] -= np.float32(h)
        step = float(plus[k]) - float(minus[k])
        if step == 0.0:  # g exactly on an edge: no step stays inside a region, the gradient jumps there
            continue
        rp = run_port(case, port, f"pred[{k}] + h", [Call(plus.reshape(c.pred.shape), c.target, c.label_weight)])
        rm = run_port(case, port, f"pred[{k}] - h", [Call(minus.reshape(c.pred.shape), c.target, c.label_weight)])
        lp, lm = rp.outputs[0].loss, rm.outputs[0].loss
        fd[k] = (lp - lm) / step
        # relative to |fd|, floored at 1e-3 of the largest gradient, plus the float32 noise of lp - lm
        noise = 4 * EPS32 / 2 * (abs(lp) + abs(lm)) * math.sqrt(c.pred.size) / step
        scale = abs(fd[k]) + (1e-3 * np.max(np.abs(analytic)) + noise) / FD_RTOL
        err = abs(analytic[k] - fd[k]) / scale if scale > 0 else 0.0
        if not math.isfinite(err):
            err = math.inf
        worst = max(worst, err)
        if err > FD_RTOL and len(runs) == 1:
            runs += [rp, rm]
            message = (f"flat index {k}: the port's gradient {analytic[k]!r}, the central difference {fd[k]!r} "
                       f"(step {step:.3g})")
    passed = worst <= FD_RTOL
    want = Expected(base.outputs[0].loss, fd.reshape(c.pred.shape), "central differences of the port's own loss")
    return Outcome(passed, worst, "" if passed else message, runs, {(0, 0): want})


# ---------------------------------------------------------------- strategies for the checks

def _unmasked(loss_kind):
    return cs.single_call_case(loss_kind)


def _one_region(loss_kind):
    return cs.single_call_case(loss_kind, bins=1)


def _clear(loss_kind):
    return cs.single_call_case(loss_kind, entries="clear")


def _scale_corpus(loss_kind: str) -> list[Case]:
    return [corpus.scale_case(loss_kind, corpus.SCALE_N)]


CATALOGUE: tuple[Property, ...] = (
    Property("value", "loss and gradient equal the reference (no momentum)", _unmasked, check_reference_value,
             corpus=corpus.value_corpus, dialect_dependent=True),
    Property("ema", "a sequence of calls with momentum matches the reference EMA",
             lambda k: cs.momentum_case(k), check_reference_value, corpus=corpus.ema_corpus, dialect_dependent=True,
             needs_momentum=True),
    Property("ema_empty", "a call with every entry masked leaves the EMA state as it was (seen by the next call)",
             lambda k: cs.momentum_case(k, empty_calls=True), check_ema_after_empty_calls,
             corpus=corpus.ema_empty_corpus, dialect_dependent=True, needs_momentum=True, needs_label_weight=True),
    Property("saturated", "entries with g = 1 are counted in the last region", cs.saturated_case,
             check_reference_value, dialect_dependent=True, class_index_ok=False),
    Property("scale", f"one call of {corpus.SCALE_N:,} entries (counts past float16 and int16) equals the reference",
             lambda k: st.just(None), check_reference_value, corpus=_scale_corpus, dialect_dependent=True,
             corpus_only=True),
    Property("uniform", "beta = 1 when every region holds the same count: loss = mean CE/ASL1", cs.uniform_case,
             check_mean_equivalent, class_index_ok=False),
    Property("one_region", "bins = 1 gives the mean CE/ASL1 over the entries", _one_region, check_mean_equivalent),
    Property("permutation", "permuting the entries permutes the gradient, keeps the loss", cs.permutation_case,
             check_permutation),
    Property("duplication", "duplicating the batch keeps the loss and halves each gradient", _clear,
             check_duplication),
    Property("masked", "masked entries change nothing (not in N, not in the histogram, values never read) and get "
             "0 gradient", cs.masked_case, check_masked_inert, corpus=corpus.masked_corpus, needs_label_weight=True),
    Property("weight_mask", "label weights act as a mask: positive values other than 1 change nothing",
             cs.weight_case, check_weight_is_mask, needs_label_weight=True),
    Property("all_masked", "an input with every entry masked gives loss 0 and gradient 0 (no NaN)",
             cs.all_masked_case, check_all_masked, corpus=corpus.all_masked_corpus, needs_label_weight=True),
    Property("finite_diff", "the gradient matches central finite differences away from region edges",
             cs.finite_difference_case, check_finite_differences, needs_grad=True, tolerance=FD_RTOL),
)

LARGE = Property("large", f"one call of {corpus.LARGE_N:,} entries (a region past 2^24: exact counts) equals the "
                 "reference", lambda k: st.just(None), check_reference_value,
                 corpus=lambda k: [corpus.large_case(k)], dialect_dependent=True, corpus_only=True)

BY_ID = {p.id: p for p in CATALOGUE + (LARGE,)}
