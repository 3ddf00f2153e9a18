"""The property catalogue: what every GHM port must satisfy, each property judging one thing,
written once against the port protocol so it checks the reference, the bundled losses and any
third-party port alike.

A check takes a ``Case`` (every random choice already drawn into it), runs the port on fresh
instances and returns an ``Outcome`` (``outcome.py``): the runs exactly as the port received
them and the property's own comparison of each judged call. Replaying a check on the same case
(``ghm_conformance.repro``) repeats the same runs and the same comparisons.

Each property is of one kind (spec.md section 9): *conformance*, the math on the domain spec.md
defines for a port (a failure is a fault), or *robustness*, behaviour outside that domain that
this project's losses promise but a port may legitimately lack (a failure is a note).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from . import cases as cs
from . import corpus
from .cases import Call, Case
from .expected import Expected, edge_explains, plain_mean, reference_values, zero
from .outcome import Comparison, NotApplicable, Outcome, judge, outcome_of, run_port
from .protocol import Port, StepOutput
from .tolerances import EPS32, FD_RTOL, RTOL
from .verdict import CONFORMANCE, ROBUSTNESS


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
    kind: str = CONFORMANCE
    describe: Callable[[Outcome | None], str] | None = None  # robustness: the note, in a user's words


# ---------------------------------------------------------------- helpers for the checks


def _derived(out: StepOutput, source: str, grad=None, like: Expected | None = None) -> Expected:
    """An expectation taken from another run's output (a metamorphic relation), with the
    rounding allowance of the reference on that input when given."""
    return Expected(
        out.loss,
        grad if grad is not None else out.grad,
        source,
        like.loss_scale if like else 0.0,
        like.grad_scale if like else None,
    )


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
    want = {
        (0, i): w
        for i, (c, w) in enumerate(zip(case.calls, reference_values(case, dialect)))
        if np.any(c.label_weight > 0)
    }
    return judge([run], want)


def check_independent_instances(case: Case, port: Port, dialect: str) -> Outcome:
    """Two fresh instances given the same calls return the same values: an instance's state (the
    EMA) is its own. A state held by the class or the module (shared by every instance) makes the
    second instance continue from where the first left off. The reference is not consulted: this
    judges the instances against each other, whatever the dialect."""
    first = run_port(case, port, "first instance")
    second = run_port(case, port, "second instance, after the first")
    want = {
        (1, i): _derived(out, f"the first instance's call {i + 1}", like=_allowance(case, call))
        for i, (call, out) in enumerate(zip(case.calls, first.outputs))
    }
    return judge([first, second], want)


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
    want = _derived(
        base.outputs[0],
        "the same port on the single batch (each copy's gradient halved)",
        want_grad,
        _allowance(case, doubled),
    )
    return judge([base, other], {(1, 0): want})


def _with_masked_values(c: Call, preds: np.ndarray, targets: np.ndarray) -> Call:
    """The call with the values of its masked entries replaced (cycled through the draws)."""
    masked = c.label_weight == 0
    out = Call(c.pred.copy(), c.target.copy(), c.label_weight)
    out.pred[masked] = np.resize(preds, int(masked.sum()))
    out.target[masked] = np.resize(targets, int(masked.sum()))
    return out


def _valid_alone(c: Call) -> Call:
    """The valid entries of a call without the masked ones: whole rows when rows are masked whole
    (a class-index port needs its rows), else one column."""
    if c.pred.ndim == 2 and np.all(c.label_weight == c.label_weight[:, :1]):
        rows = c.label_weight[:, 0] > 0
        return Call(*(a[rows] for a in (c.pred, c.target, c.label_weight)))
    valid = c.label_weight > 0
    return Call(*(a[valid].reshape(-1, 1) for a in (c.pred, c.target, c.label_weight)))


def check_masked_inert(case: Case, port: Port, dialect: str) -> Outcome:
    """Masked entries holding finite values in the domain change nothing: not counted in N nor
    in the histogram, gradient 0. The batch, and the batch with other values in its masked
    entries, give what its valid entries alone give."""
    c = case.calls[0]
    other = _with_masked_values(c, case.draws["masked_pred"], case.draws["masked_target"])
    runs = [
        run_port(case, port, "valid entries alone", [_valid_alone(c)]),
        run_port(case, port, "batch with masked entries"),
        run_port(case, port, "other finite values in the masked entries", [other]),
    ]
    solo = runs[0].outputs[0]
    grad = None
    if solo.grad is not None:
        grad = np.zeros(c.pred.shape)
        grad[c.label_weight > 0] = solo.grad.ravel()
    want = _derived(solo, "the same port on the valid entries alone (masked gradients 0)", grad, _allowance(case))
    return judge(runs, {(1, 0): want, (2, 0): want})


def check_masked_unread(case: Case, port: Port, dialect: str) -> Outcome:
    """Robustness: NaN, Inf and out-of-range values held by masked entries are never read (spec.md
    1, 7): the batch gives what it gives with finite values there."""
    c = case.calls[0]
    junk = _with_masked_values(c, case.draws["masked_pred"], case.draws["masked_target"])
    runs = [
        run_port(case, port, "finite values in the masked entries"),
        run_port(case, port, "NaN/Inf/out-of-range values in the masked entries", [junk]),
    ]
    want = _derived(runs[0].outputs[0], "the same port with finite values in the masked entries", like=_allowance(case))
    return judge(runs, {(1, 0): want})


def describe_masked_unread(outcome: Outcome | None) -> str:
    """The note of a port that reads its masked entries, from what it did with them."""
    runs = [] if outcome is None else outcome.runs
    if runs and runs[0].raised:  # it fails with finite values there too: the conformance rows say why
        return f"not judged: the port raised {runs[0].raised.split(':')[0]} with finite values in the masked entries"
    junk = runs[1] if len(runs) > 1 else None
    if junk is not None and junk.raised:
        return f"reads masked values (raises {junk.raised.split(':')[0]} on NaN/Inf there)"
    out = junk.outputs[0] if junk is not None and junk.outputs else None
    if out is not None and (
        not math.isfinite(out.loss) or (out.grad is not None and not np.all(np.isfinite(out.grad)))
    ):
        return "reads masked values (NaN/Inf there propagates)"
    return "reads masked values (non-finite or out-of-range values there change the result)"


def check_weight_is_mask(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    scaled = Call(c.pred, c.target, case.draws["weights"])
    runs = [run_port(case, port, "label weights 0/1"), run_port(case, port, "other positive weights", [scaled])]
    return judge(
        runs,
        {(1, 0): _derived(runs[0].outputs[0], "the same port with every positive weight 1", like=_allowance(case))},
    )


def check_all_masked(case: Case, port: Port, dialect: str) -> Outcome:
    c = case.calls[0]
    empty = Call(c.pred, c.target, np.zeros_like(c.label_weight))
    run = run_port(case, port, "every entry masked", [empty])
    return judge([run], {(0, 0): zero(empty)})


def _fd_steps(case: Case) -> np.ndarray:
    """Per entry, a step that keeps its g inside its region (0 for a g exactly on an edge, where
    no step does and the gradient jumps)."""
    c = case.calls[0]
    g = cs.gradient_norm(case.loss_kind, c.pred, c.target, case.mu).ravel()
    dist = np.minimum(g * case.bins % 1.0, 1.0 - g * case.bins % 1.0) / case.bins
    if case.loss_kind == "c":  # bounds on |dg/dpred|
        slope = 0.25
    else:
        assert case.mu is not None, "a GHM-R case carries mu"
        slope = 1.0 / case.mu
    fraction = case.draws.get("step_fraction", 0.5)
    return np.minimum(1e-2, fraction * dist / slope) if case.bins > 1 else np.full(g.size, 1e-2)


def _fd_error(analytic: float, fd: float, lp: float, lm: float, step: float, largest: float, n: int) -> float:
    """|analytic - fd| relative to |fd|, floored at 1e-3 of the largest gradient, plus the float32
    noise of lp - lm. Any non-finite value (a NaN gradient or loss) is an infinite error."""
    if not all(math.isfinite(v) for v in (analytic, fd, lp, lm, largest)):
        return math.inf
    noise = 4 * EPS32 / 2 * (abs(lp) + abs(lm)) * math.sqrt(n) / step
    scale = abs(fd) + (1e-3 * largest + noise) / FD_RTOL
    return abs(analytic - fd) / scale if scale > 0 else (0.0 if analytic == fd else math.inf)


def check_finite_differences(case: Case, port: Port, dialect: str) -> Outcome:
    """The port's gradient against central differences of its own loss, entry by entry."""
    c = case.calls[0]
    base = run_port(case, port, "batch")
    if base.outputs[0].grad is None:
        raise NotApplicable("the port returns no gradient")
    analytic = base.outputs[0].grad.ravel()
    largest = float(np.max(np.abs(analytic))) if analytic.size else 0.0
    steps, fd, errors, runs, where = _fd_steps(case), np.zeros(c.pred.size), np.zeros(c.pred.size), [base], ""
    for k in np.flatnonzero(steps):
        plus, minus = c.pred.copy().ravel(), c.pred.copy().ravel()
        plus[k] += np.float32(steps[k])
        minus[k] -= np.float32(steps[k])
        step = float(plus[k]) - float(minus[k])
        if step == 0.0:
            continue
        rp = run_port(case, port, f"pred[{k}] + h", [Call(plus.reshape(c.pred.shape), c.target, c.label_weight)])
        rm = run_port(case, port, f"pred[{k}] - h", [Call(minus.reshape(c.pred.shape), c.target, c.label_weight)])
        lp, lm = rp.outputs[0].loss, rm.outputs[0].loss
        fd[k] = (lp - lm) / step
        errors[k] = _fd_error(float(analytic[k]), fd[k], lp, lm, step, largest, c.pred.size)
        if errors[k] > FD_RTOL and not where:
            runs += [rp, rm]
            where = (
                f"d loss / d pred at flat index {k} is {analytic[k]!r}, the central difference of the port's own "
                f"loss {fd[k]!r} (step {step:.3g})"
            )
    worst = float(np.max(errors)) if errors.size else 0.0
    nonfinite = np.flatnonzero(~np.isfinite(analytic))
    if not math.isfinite(base.outputs[0].loss) or nonfinite.size:  # where the reference is finite, always
        worst = math.inf
        where = where or (
            f"the port's loss is {base.outputs[0].loss!r}"
            if not nonfinite.size
            else f"d loss / d pred at flat index {nonfinite[0]} is {analytic[nonfinite[0]]!r}"
        )
    want = Expected(base.outputs[0].loss, fd.reshape(c.pred.shape), "central differences of the port's own loss")
    comparison = Comparison(
        want, 0.0 if math.isfinite(base.outputs[0].loss) else math.inf, worst, worst <= FD_RTOL, where
    )
    return outcome_of(runs, {(0, 0): comparison})


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
    Property(
        "value",
        "loss and gradient equal the reference (no momentum)",
        _unmasked,
        check_reference_value,
        corpus=corpus.value_corpus,
        dialect_dependent=True,
    ),
    Property(
        "ema",
        "a sequence of calls with momentum matches the reference EMA",
        lambda k: cs.momentum_case(k),
        check_reference_value,
        corpus=corpus.ema_corpus,
        dialect_dependent=True,
        needs_momentum=True,
    ),
    Property(
        "ema_empty",
        "a call with every entry masked leaves the EMA state as it was (seen by the next call)",
        lambda k: cs.momentum_case(k, empty_calls=True),
        check_ema_after_empty_calls,
        corpus=corpus.ema_empty_corpus,
        dialect_dependent=True,
        needs_momentum=True,
        needs_label_weight=True,
    ),
    Property(
        "independent_instances",
        "two fresh instances given the same calls agree (no state shared between "
        "instances, e.g. an EMA held by the class)",
        lambda k: cs.momentum_case(k),
        check_independent_instances,
        corpus=corpus.ema_corpus,
        needs_momentum=True,
        corpus_only=True,
    ),
    Property(
        "saturated",
        "entries with g = 1 are counted in the last region",
        cs.saturated_case,
        check_reference_value,
        dialect_dependent=True,
        class_index_ok=False,
    ),
    Property(
        "scale",
        f"one call of {corpus.SCALE_N:,} entries (counts past float16 and int16) equals the reference",
        lambda k: st.just(None),
        check_reference_value,
        corpus=_scale_corpus,
        dialect_dependent=True,
        corpus_only=True,
    ),
    Property(
        "uniform",
        "beta = 1 when every region holds the same count: loss = mean CE/ASL1",
        cs.uniform_case,
        check_mean_equivalent,
        class_index_ok=False,
    ),
    Property("one_region", "bins = 1 gives the mean CE/ASL1 over the entries", _one_region, check_mean_equivalent),
    Property(
        "permutation",
        "permuting the entries permutes the gradient, keeps the loss",
        cs.permutation_case,
        check_permutation,
    ),
    Property("duplication", "duplicating the batch keeps the loss and halves each gradient", _clear, check_duplication),
    Property(
        "masked",
        "masked entries (holding any finite values in the domain) change nothing: not in N, not in "
        "the histogram, gradient 0",
        cs.masked_case,
        check_masked_inert,
        corpus=corpus.masked_corpus,
        needs_label_weight=True,
    ),
    Property(
        "weight_mask",
        "label weights act as a mask: positive values other than 1 change nothing",
        cs.weight_case,
        check_weight_is_mask,
        needs_label_weight=True,
    ),
    Property(
        "all_masked",
        "an input with every entry masked gives loss 0 and gradient 0 (no NaN)",
        cs.all_masked_case,
        check_all_masked,
        corpus=corpus.all_masked_corpus,
        needs_label_weight=True,
    ),
    Property(
        "finite_diff",
        "the gradient matches central finite differences away from region edges",
        cs.finite_difference_case,
        check_finite_differences,
        corpus=corpus.finite_difference_corpus,
        needs_grad=True,
        tolerance=FD_RTOL,
    ),
    Property(
        "masked_unread",
        "NaN, Inf and out-of-range values held by masked entries are never read",
        cs.masked_unread_case,
        check_masked_unread,
        corpus=corpus.masked_unread_corpus,
        needs_label_weight=True,
        kind=ROBUSTNESS,
        describe=describe_masked_unread,
    ),
)

LARGE = Property(
    "large",
    f"one call of {corpus.LARGE_N:,} entries (a region past 2^24: exact counts) equals the reference",
    lambda k: st.just(None),
    check_reference_value,
    corpus=lambda k: [corpus.large_case(k)],
    dialect_dependent=True,
    corpus_only=True,
)

BY_ID = {p.id: p for p in CATALOGUE + (LARGE,)}
