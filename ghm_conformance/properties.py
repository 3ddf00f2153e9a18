"""The property catalogue: what every GHM port must satisfy, written once against the port
protocol (``protocol.py``) so it checks the reference, the bundled torch / tf losses and any
third-party port alike.

Each property draws ``Case``s from a Hypothesis strategy and ``check``s one, returning an
``Outcome``. Properties marked ``dialect_dependent`` compare with the reference in a dialect;
the others are metamorphic and hold in both dialects.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import strategies as st

import reference
from reference import equations as eq

from . import cases as cs
from .cases import Call, Case
from .protocol import PortFactory, StepOutput, call_step

RTOL = 2e-4  # float32 port vs float64 reference: a few float32 ulps over a short sum
LOSS_FLOOR = 1e-5  # absolute floor of the relative loss error (losses of exactly 0)
FD_RTOL = 0.02  # central differences in float32 with steps kept inside a region
# A float32 port may round each term L_i with an absolute error of a few ulps of the numbers it
# is computed from (|x|, |t|, and sqrt(d^2 + mu^2) for the literal ASL1 of the official code,
# which cancels for |d| << mu). The loss tolerance therefore has an absolute part,
# ROUNDING_ULPS * eps32 * (1/N) sum_i beta_i m_i, on top of RTOL.
EPS32 = float(np.finfo(np.float32).eps)
ROUNDING_ULPS = 4  # the literal ASL1 errs by about eps32 * m / 4; a few ops more in a port


class NotApplicable(Exception):
    """The port does not support what a property needs (momentum, gradients)."""


@dataclass
class Outcome:
    ok: bool
    error: float  # largest relative error seen in this case (0 when exact)
    message: str = ""
    port: list = field(default_factory=list)  # what the port returned, per call
    expected: list = field(default_factory=list)  # what it should have returned, per call
    edge: bool = False  # the disagreement is explained by g within rounding of an edge


@dataclass(frozen=True)
class Property:
    id: str
    title: str
    strategy: Callable[[str], st.SearchStrategy]
    check: Callable[[Case, PortFactory, str], Outcome]
    dialect_dependent: bool = False
    needs_momentum: bool = False
    needs_grad: bool = False
    tolerance: float = RTOL


# ---------------------------------------------------------------- running ports and the reference

def run_port(case: Case, make_port: PortFactory, calls=None) -> list[StepOutput]:
    """Run ``calls`` (default: the case's) on one fresh port instance, in order."""
    step = make_port(bins=case.bins, momentum=case.momentum, **case.hyper)
    return [call_step(step, c.pred, c.target, c.label_weight) for c in (calls or case.calls)]


def rounding_scales(case: Case, call: Call, beta: np.ndarray) -> tuple[float, np.ndarray]:
    """How much float32 rounding a correct port may show: for the loss,
    (1/N) sum_i beta_i m_i with m_i the magnitude L_i is rounded against; for each gradient
    entry, beta_i r_i / N with r_i the magnitude dL_i/dx_i is rounded against (p - t cancels
    near p = t; d = x - t loses |x| + |t| ulps, amplified by 1/sqrt(d^2 + mu^2))."""
    x, t = call.pred.astype(np.float64), call.target.astype(np.float64)
    valid = call.label_weight > 0
    n = max(int(valid.sum()), 1)
    if case.loss == "c":
        m, r = np.abs(x) + np.abs(t) + 1.0, np.ones(x.shape)
    else:
        root = np.sqrt((x - t) ** 2 + case.mu ** 2)
        m, r = np.abs(x) + np.abs(t) + root, 1.0 + (np.abs(x) + np.abs(t)) / root
    b = np.where(valid, beta, 0.0)
    return float(np.sum(b * m) / n), b * r / n


def run_reference(case: Case, dialect: str) -> list[StepOutput]:
    fn = reference.ghm_c if case.loss == "c" else reference.ghm_r
    state, outs = None, []
    for c in case.calls:
        r = fn(c.pred, c.target, c.label_weight, bins=case.bins, momentum=case.momentum, state=state,
               dialect=dialect, **case.hyper)
        state = r.state
        outs.append(StepOutput(float(r.loss), r.grad, *rounding_scales(case, c, r.weights)))
    return outs


def loss_error(got: float, want: float, scale: float = 0.0) -> float:
    """|got - want| relative to |want|, with the float32 rounding allowance; passes at <= RTOL."""
    if not math.isfinite(got):
        return math.inf
    return abs(got - want) / max(abs(want) + ROUNDING_ULPS * EPS32 * scale / RTOL, LOSS_FLOOR)


def grad_errors(got: np.ndarray, want: np.ndarray, rounding: np.ndarray | None = None) -> np.ndarray:
    """Per entry |got - want| relative to |want| (floor: 1e-3 of the largest), with the float32
    rounding allowance; an entry passes at <= RTOL."""
    if not np.all(np.isfinite(got)):
        return np.where(np.isfinite(got), 0.0, math.inf)
    scale = np.abs(want) + 1e-3 * np.max(np.abs(want)) + 1e-9
    if rounding is not None:
        scale = scale + ROUNDING_ULPS * EPS32 * rounding / RTOL
    return np.abs(got - want) / scale


def grad_error(got: np.ndarray | None, want: np.ndarray, rounding: np.ndarray | None = None) -> float:
    if got is None or want.size == 0:
        return 0.0
    return float(np.max(grad_errors(got, want, rounding)))


def compare(got: list[StepOutput], want: list[StepOutput], tol: float, what: str) -> Outcome:
    """Call by call: the loss, and the gradient when the port returns one. The message names the
    first call that fails, and its worst gradient entry."""
    worst, message = 0.0, ""
    for i, (g, w) in enumerate(zip(got, want)):
        e_loss = loss_error(g.loss, w.loss, w.scale)
        per_entry = None if g.grad is None or w.grad.size == 0 else grad_errors(g.grad, w.grad, w.grad_scale)
        e_grad = 0.0 if per_entry is None else float(np.max(per_entry))
        worst = max(worst, e_loss, e_grad)
        if message:
            continue
        if e_loss > tol:
            message = f"call {i + 1}: loss {g.loss!r} but {what} gives {w.loss!r}"
        elif e_grad > tol:
            k = int(np.argmax(per_entry))
            message = (f"call {i + 1}: d loss / d pred at flat index {k} is {g.grad.ravel()[k]!r} "
                       f"but {what} gives {w.grad.ravel()[k]!r}")
    return Outcome(worst <= tol, worst, message, [_show(o) for o in got], [_show(o) for o in want])


def _show(o: StepOutput):
    return {"loss": o.loss, "grad": None if o.grad is None else o.grad.tolist()}


def _per_entry(case: Case, pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L_i and dL_i/dx_i in float64: CE, Eqs. (1)-(2), or ASL1, Eqs. (17)-(18)."""
    x, t = pred.astype(np.float64), target.astype(np.float64)
    if case.loss == "c":
        return eq.cross_entropy(x, t), eq.cross_entropy_grad(x, t)
    return eq.asl1(x - t, case.mu), eq.asl1_grad(x - t, case.mu)


def _plain_mean(case: Case, call: Call) -> StepOutput:
    """The unweighted mean CE / ASL1 over valid entries, and its gradient: beta = 1."""
    per, dper = _per_entry(case, call.pred, call.target)
    valid = call.label_weight > 0
    n = max(int(valid.sum()), 1)
    return StepOutput(float(np.sum(per[valid]) / n), np.where(valid, dper, 0.0) / n,
                      *rounding_scales(case, call, np.ones(per.shape)))


# ---------------------------------------------------------------- edge explanation

def edge_explains(case: Case, dialect: str, got: StepOutput, tol: float) -> bool:
    """Does the port agree with the reference once the entries whose g lies within rounding
    of a region edge are allowed on either side of it? (one call, no momentum)"""
    call = case.calls[0]
    valid = call.label_weight > 0
    g = cs.gradient_norm(case.loss, call.pred, call.target, case.mu)[valid]
    ambiguous = np.flatnonzero(cs.near_edge(g, case.bins))
    if ambiguous.size == 0 or ambiguous.size > 8:
        return False
    per, dper = _per_entry(case, call.pred[valid], call.target[valid])
    base = eq.region_index(g, case.bins)
    edges = np.round(g[ambiguous] * case.bins).astype(np.int64)
    for sides in itertools.product((0, 1), repeat=ambiguous.size):
        ind = base.copy()
        ind[ambiguous] = np.minimum(edges - 1 + np.array(sides), case.bins - 1)
        beta, _ = reference.harmonize(ind, bins=case.bins, momentum=0.0, state=None, dialect=dialect)
        grad = np.zeros(call.pred.shape)
        grad[valid] = beta * dper / valid.sum()
        full_beta = np.zeros(call.pred.shape)
        full_beta[valid] = beta
        want = StepOutput(float(np.sum(beta * per) / valid.sum()), grad, *rounding_scales(case, call, full_beta))
        if (loss_error(got.loss, want.loss, want.scale) <= tol
                and grad_error(got.grad, want.grad, want.grad_scale) <= tol):
            return True
    return False


# ---------------------------------------------------------------- checks

def check_reference_value(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    got = run_port(case, make_port)
    out = compare(got, run_reference(case, dialect), RTOL, f"the reference ({dialect})")
    if not out.ok and case.momentum == 0.0 and len(case.calls) == 1 and edge_explains(case, dialect, got[0], RTOL):
        out.edge = True
        out.message += " (explained by g within rounding of a region edge)"
    return out


def check_mean_equivalent(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    want = [_plain_mean(case, c) for c in case.calls]
    return compare(run_port(case, make_port), want, RTOL, "the plain mean CE/ASL1 (beta = 1)")


def check_permutation(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    c = case.calls[0]
    order = np.random.default_rng(c.pred.size).permutation(c.pred.size)
    perm = Call(*(a.ravel()[order].reshape(a.shape) for a in (c.pred, c.target, c.label_weight)))
    base, moved = run_port(case, make_port)[0], run_port(case, make_port, [perm])[0]
    back = None if moved.grad is None else np.empty(c.pred.size)
    if back is not None:
        back[order] = moved.grad.ravel()
        back = back.reshape(c.pred.shape)
    return compare([StepOutput(moved.loss, back)], [base], RTOL, "the same port on the unpermuted batch")


def check_duplication(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    c = case.calls[0]
    dup = Call(*(np.concatenate([a, a]) for a in (c.pred, c.target, c.label_weight)))
    base, doubled = run_port(case, make_port)[0], run_port(case, make_port, [dup])[0]
    half = None if doubled.grad is None else doubled.grad[: c.pred.shape[0]] * 2.0
    return compare([StepOutput(doubled.loss, half)], [base], RTOL,
                   "the same port on the single batch (grad of each copy = half)")


def check_masked_inert(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    c = case.calls[0]
    masked = c.label_weight == 0
    shift = 3.0 if case.loss == "c" else 5.0
    scrambled = Call(np.where(masked, c.pred + shift, c.pred).astype(np.float32),
                     np.where(masked, 1.0 - c.target if case.loss == "c" else c.target - 1.0, c.target).astype(np.float32),
                     c.label_weight)
    base, other = run_port(case, make_port)[0], run_port(case, make_port, [scrambled])[0]
    if base.grad is not None and np.any(base.grad[masked] != 0):
        k = int(np.flatnonzero(masked.ravel())[0])
        return Outcome(False, math.inf, f"a masked entry (flat index {k}) gets gradient {base.grad.ravel()[k]!r}, not 0",
                       [_show(base)], [])
    out = compare([other], [base], RTOL, "the same batch with different values in its masked entries")
    valid = ~masked
    if not out.ok or not valid.any():
        return out
    # The masked entries must not count in N or the histogram: the loss equals the loss on the
    # valid entries alone (as an (N_valid, 1) batch).
    only = Call(*(a[valid].reshape(-1, 1) for a in (c.pred, c.target, c.label_weight)))
    alone = run_port(case, make_port, [only])[0]
    expanded = None
    if base.grad is not None:
        expanded = np.zeros(c.pred.shape)
        expanded[valid] = alone.grad.ravel()
    return compare([base], [StepOutput(alone.loss, expanded)], RTOL, "the same port on the valid entries alone")


def check_weight_is_mask(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    c = case.calls[0]
    rng = np.random.default_rng(c.pred.size)
    scaled = np.where(c.label_weight > 0, rng.choice([0.5, 2.0, 3.0], size=c.pred.shape), 0.0).astype(np.float32)
    base = run_port(case, make_port)[0]
    other = run_port(case, make_port, [Call(c.pred, c.target, scaled)])[0]
    return compare([other], [base], RTOL, "the same port with every positive label weight set to 1")


def check_all_masked(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    c = case.calls[0]
    out = run_port(case, make_port, [Call(c.pred, c.target, np.zeros_like(c.label_weight))])[0]
    grad_bad = out.grad is not None and not np.all(out.grad == 0)
    if out.loss == 0.0 and not grad_bad:
        return Outcome(True, 0.0)
    what = f"loss {out.loss!r}" if out.loss != 0.0 else "a non-zero gradient"
    return Outcome(False, math.inf, f"every entry is masked, yet the port returns {what}; expected 0",
                   [_show(out)], [{"loss": 0.0, "grad": np.zeros(c.pred.shape).tolist()}])


def check_finite_differences(case: Case, make_port: PortFactory, dialect: str) -> Outcome:
    c = case.calls[0]
    base = run_port(case, make_port)[0]
    if base.grad is None:
        raise NotApplicable("the port returns no gradient")
    g = cs.gradient_norm(case.loss, c.pred, c.target, case.mu).ravel()
    dist = np.minimum(g * case.bins % 1.0, 1.0 - g * case.bins % 1.0) / case.bins
    slope = 0.25 if case.loss == "c" else 1.0 / case.mu  # bounds on |dg/dpred|
    worst, message = 0.0, ""
    fd = np.zeros(c.pred.size)
    for k in range(c.pred.size):
        h = min(1e-2, 0.5 * dist[k] / slope) if case.bins > 1 else 1e-2
        plus, minus = c.pred.copy().ravel(), c.pred.copy().ravel()
        plus[k] += np.float32(h)
        minus[k] -= np.float32(h)
        step = float(plus[k]) - float(minus[k])
        lp = run_port(case, make_port, [Call(plus.reshape(c.pred.shape), c.target, c.label_weight)])[0].loss
        lm = run_port(case, make_port, [Call(minus.reshape(c.pred.shape), c.target, c.label_weight)])[0].loss
        fd[k] = (lp - lm) / step
        analytic = base.grad.ravel()[k]
        # relative to |fd|, floored at 1e-3 of the largest gradient, plus the float32 noise of lp - lm
        noise = 4 * EPS32 / 2 * (abs(lp) + abs(lm)) * math.sqrt(c.pred.size) / step
        scale = abs(fd[k]) + (1e-3 * np.max(np.abs(base.grad)) + noise) / FD_RTOL
        err = abs(analytic - fd[k]) / scale if scale > 0 else 0.0
        worst = max(worst, err)
        if err > FD_RTOL and not message:
            message = f"flat index {k}: port's gradient {analytic!r}, central difference {fd[k]!r} (step {step:.3g})"
    return Outcome(not message, worst, message, [_show(base)],
                   [{"loss": base.loss, "grad": fd.reshape(c.pred.shape).tolist()}])


# ---------------------------------------------------------------- strategies for the checks

@st.composite
def _all_masked_case(draw, loss):
    return draw(cs.raw_case(loss, allow_masked=False))


@st.composite
def _single_region_case(draw, loss):
    return draw(cs.raw_case(loss, bins=1))


@st.composite
def _fd_case(draw, loss):
    bins = draw(st.sampled_from((1, 2, 3, 5, 10)))
    mu = draw(st.sampled_from((0.1, 0.5))) if loss == "r" else None
    call = draw(cs.clear_call(loss, bins, mu, allow_masked=True, max_size=8))
    return Case(loss, bins, 0.0, mu, [call])


@st.composite
def _masked_case(draw, loss):
    case = draw(cs.clear_case(loss, allow_masked=True, min_size=2))
    weights = case.calls[0].label_weight.reshape(-1)
    weights[0] = 1.0  # at least one valid entry ...
    weights[draw(st.integers(1, weights.size - 1))] = 0.0  # ... and at least one masked
    return case


CATALOGUE: tuple[Property, ...] = (
    Property("value", "loss and gradient equal the reference (no momentum)",
             lambda loss: cs.raw_case(loss), check_reference_value, dialect_dependent=True),
    Property("ema", "a sequence of calls with momentum matches the reference EMA",
             lambda loss: cs.momentum_case(loss), check_reference_value, dialect_dependent=True,
             needs_momentum=True),
    Property("ema_empty", "a call with every entry masked leaves the EMA state as it was",
             lambda loss: cs.momentum_case(loss, empty_call=True), check_reference_value, dialect_dependent=True,
             needs_momentum=True),
    Property("saturated", "entries with g = 1 are counted in the last region",
             lambda loss: cs.saturated_case(loss), check_reference_value, dialect_dependent=True),
    Property("uniform", "beta = 1 when every region holds the same count: loss = mean CE/ASL1",
             lambda loss: cs.uniform_case(loss), check_mean_equivalent),
    Property("one_region", "bins = 1 gives the mean CE/ASL1 over valid entries",
             _single_region_case, check_mean_equivalent),
    Property("permutation", "permuting the entries permutes the gradient, keeps the loss",
             lambda loss: cs.clear_case(loss), check_permutation),
    Property("duplication", "duplicating the batch keeps the loss and halves each gradient",
             lambda loss: cs.clear_case(loss), check_duplication),
    Property("masked", "masked entries change nothing (not in N, not in the histogram) and get 0 gradient",
             _masked_case, check_masked_inert),
    Property("weight_mask", "label weights act as a mask: positive values other than 1 change nothing",
             lambda loss: cs.clear_case(loss, allow_masked=True), check_weight_is_mask),
    Property("all_masked", "an input with every entry masked gives loss 0 and gradient 0 (no NaN)",
             _all_masked_case, check_all_masked),
    Property("finite_diff", "the gradient matches central finite differences away from region edges",
             _fd_case, check_finite_differences, needs_grad=True, tolerance=FD_RTOL),
)

BY_ID = {p.id: p for p in CATALOGUE}
