"""The narrow input class a failing check belongs to, named so that a user can act on it in one
line: "the gradient at pred = 0 exactly" (autograd's subgradient of max/abs at 0), "g exactly on a
region edge". A class is *confirmed* when the check shows the failure is confined to it: the
gradient differs only at entries holding pred = 0 while the loss agrees, or (for `value`) the same
input with the edge entries moved off their edge passes. The verdict names a dialect "except" a
confirmed class (``verdict.py``); an unconfirmed class is only a hint in the row's note.

Properties named for their input class (``saturated``, ``all_masked``, ``masked_unread``) need no
class: their name says it.
"""

from __future__ import annotations

import numpy as np

from . import cases as cs
from .cases import Call, Case
from .expected import reference_values
from .outcome import Outcome, judge, run_port
from .protocol import Port
from .tolerances import grad_errors

GRAD_AT_ZERO = "the gradient at pred = 0 exactly"
EXACT_EDGE = "g exactly on a region edge"
WHY = {
    GRAD_AT_ZERO: "autograd's subgradient of max/abs at 0, as in a hand-written "
    "max(x, 0) - x t + log1p(exp(-|x|)) cross entropy",
    EXACT_EDGE: "e.g. pred = 0 gives g = 1/2 exactly; a region test closed on the right counts it twice",
}
# Steps of the edge entries' logits that confirm a failure is confined to the edge itself: both
# directions, just past the rounding excuse of spec.md 8 (|g - k/M| < 1e-5: about 4e-5 of a logit
# at p = 1/2) and well past it, so that a port wrong *near* edges (floor(g (M - 1e-4))) is not
# confirmed as wrong only *on* them.
STEPS_OFF_EDGE = tuple(np.float32(v) for v in (8e-5, -8e-5, 4e-3, -4e-3))
NOT_CLASSIFIED = ("saturated", "all_masked", "masked_unread")  # named for their input class already


def exact_edges(case: Case, call: Call) -> np.ndarray:
    """Valid entries whose g is exactly an interior edge k/M as a float64 rational (spec.md 8)."""
    g = cs.gradient_norm(case.loss_kind, call.pred, call.target, case.mu)
    inside = (call.label_weight > 0) & (g > 0) & (g < 1)
    return inside & on_grid(np.where(inside, g, 0.5), case.bins)


def on_grid(g: np.ndarray, bins: int) -> np.ndarray:
    """Whether g * bins is an integer, exactly, for float64 g in (0, 1); vectorized (a call past 2^24
    entries has millions of them). g = m / 2^k with an integer significand m, so g * bins is an
    integer exactly when 2^k divides m * bins: when the powers of two in m and in bins reach k."""
    f, e = np.frexp(g.astype(np.float64))
    m = (f * 2.0**53).astype(np.int64)  # exact: f in [0.5, 1) has 53 significant bits
    k = 53 - e
    twos_m = np.frexp((m & -m).astype(np.float64))[1] - 1  # m's lowest set bit, a power of two: exact
    twos_bins = (bins & -bins).bit_length() - 1  # bins >= 1
    return twos_m + twos_bins >= k


def _grad_only_at_zero(outcome: Outcome, key, tol: float) -> bool:
    cmp = outcome.comparisons[key]
    got = outcome.runs[key[0]].outputs[key[1]]
    if cmp.loss_error > tol or got.grad is None or cmp.expected.grad is None:
        return False
    bad = grad_errors(got.grad, cmp.expected.grad, cmp.expected.grad_scale) > tol
    pred = outcome.runs[key[0]].calls[key[1]].pred
    return bool(bad.any()) and bool(np.all(pred[bad] == 0.0))


def classify(property_id: str, case: Case, outcome: Outcome, port: Port, dialect: str, tol: float) -> tuple[str, bool]:
    """(input class, confirmed) of a failing check; ("", False) when it belongs to no narrow class."""
    failing = [key for key, c in outcome.comparisons.items() if not c.passed]
    if property_id in NOT_CLASSIFIED or not failing or any(run.raised for run in outcome.runs):
        return "", False
    if all(_grad_only_at_zero(outcome, key, tol) for key in failing):
        return GRAD_AT_ZERO, True
    r, i = failing[0]
    call = outcome.runs[r].calls[i]
    on_edge = exact_edges(case, call)
    if not on_edge.any():
        return "", False
    if property_id != "value" or len(case.calls) != 1 or case.momentum:
        return EXACT_EDGE, False
    for step in STEPS_OFF_EDGE:
        moved = Call(call.pred.copy(), call.target, call.label_weight)
        moved.pred[on_edge] += step
        g = cs.gradient_norm(case.loss_kind, moved.pred, moved.target, case.mu)
        if exact_edges(case, moved).any() or cs.near_edge(g[on_edge], case.bins).any():
            return EXACT_EDGE, False
        off = Case(case.loss_kind, case.bins, case.momentum, case.mu, [moved], dict(case.draws))
        try:
            run = run_port(off, port, "the same input, its edge entries moved off the edge")
        except (Exception, SystemExit):  # noqa: BLE001 - a crash off the edge: not confined to the edge
            return EXACT_EDGE, False
        if not judge([run], {(0, 0): reference_values(off, dialect)[0]}, tol).passed:
            return EXACT_EDGE, False
    return EXACT_EDGE, True


def off_class(input_class: str):
    """The map that moves a case out of ``input_class`` (for a search without that class)."""
    return off_zero if input_class == GRAD_AT_ZERO else off_edges


def off_zero(case: Case | None) -> Case | None:
    """The case with every logit of exactly 0 moved to 4e-3 (off 0, and off the edge g = 1/2)."""
    return _moved(case, lambda c: c.pred == 0.0)


def off_edges(case: Case | None) -> Case | None:
    """The case with every exact-edge entry moved off its edge (its logit by +4e-3): the input a
    port wrong only *on* edges gets right."""
    if case is None:
        return None
    return _moved(case, lambda c: exact_edges(case, c))


def _moved(case: Case | None, where) -> Case | None:
    if case is None:
        return None
    calls = []
    for call in case.calls:
        on_edge = where(call)
        moved = Call(call.pred.copy(), call.target, call.label_weight)
        moved.pred[on_edge] += STEPS_OFF_EDGE[2]
        calls.append(moved)
    return Case(case.loss_kind, case.bins, case.momentum, case.mu, calls, dict(case.draws))
