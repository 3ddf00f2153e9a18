"""What a port should return: the reference's values for a case (with the float32 rounding each
may legitimately show), the plain mean when beta = 1, and whether a disagreement is explained by
an entry within rounding of a region edge (spec.md section 8)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

import reference
from reference import equations as eq

from .cases import Call, Case, gradient_norm, near_edge
from .tolerances import RTOL, grad_error, loss_error, rounding_scales


@dataclass
class Expected:
    """The value one call should return, where it comes from, and its rounding allowances."""

    loss: float
    grad: np.ndarray | None
    source: str
    loss_scale: float = 0.0
    grad_scale: np.ndarray | None = None


def per_entry_terms(loss_kind: str, pred: np.ndarray, target: np.ndarray, mu) -> tuple[np.ndarray, np.ndarray]:
    """L_i and dL_i/dx_i in float64: CE, Eqs. (1)-(2), or ASL1, Eqs. (17)-(18)."""
    x, t = pred.astype(np.float64), target.astype(np.float64)
    if loss_kind == "c":
        return eq.cross_entropy(x, t), eq.cross_entropy_grad(x, t)
    return eq.asl1(x - t, mu), eq.asl1_grad(x - t, mu)


def per_entry(case: Case, pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return per_entry_terms(case.loss_kind, pred, target, case.mu)


DEDUPE_ABOVE = 200_000  # entries: past this, a call of few distinct entries is evaluated per distinct entry


def reference_values(case: Case, dialect: str) -> list[Expected]:
    """The reference's loss and gradient for every call of the case, in order (one instance)."""
    if len(case.calls) == 1 and case.momentum == 0.0 and case.calls[0].size > DEDUPE_ABOVE:
        return [_reference_deduped(case, dialect)]
    fn = reference.ghm_c if case.loss_kind == "c" else reference.ghm_r
    state, out = None, []
    for c in case.calls:
        r = fn(
            c.pred,
            c.target,
            c.label_weight,
            bins=case.bins,
            momentum=case.momentum,
            state=state,
            dialect=dialect,
            **case.hyper,
        )
        state = r.state
        scale, grad_scale = rounding_scales(case.loss_kind, case.mu, c.pred, c.target, c.label_weight > 0, r.weights)
        out.append(Expected(float(r.loss), r.grad, f"the reference ({dialect})", scale, grad_scale))
    return out


def _reference_deduped(case: Case, dialect: str) -> Expected:
    """The reference on a huge single call (all valid): the exact region index (rational
    arithmetic, slow per entry) is taken once per distinct (pred, target); counts, beta and the
    sums are the reference's own functions on the whole batch."""
    c = case.calls[0]
    assert np.all(c.label_weight > 0), "huge calls are drawn unmasked"
    pairs = np.stack([c.pred.ravel(), c.target.ravel()], axis=1)
    if pairs.dtype == np.float32:
        # Distinct (pred, target) bit patterns, one uint64 each: a row-wise np.unique sorts rows as
        # opaque bytes (20 s at 2^24 entries). By bits, -0.0 and 0.0 are two entries, each exact.
        keys, inverse = np.unique(pairs.view(np.uint64).ravel(), return_inverse=True)
        distinct = keys.view(np.float32).reshape(-1, 2)
    else:
        distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    g = gradient_norm(case.loss_kind, distinct[:, 0], distinct[:, 1], case.mu)
    ind = eq.region_index(g, case.bins)[inverse]
    beta, _ = reference.harmonize(ind, bins=case.bins, momentum=0.0, state=None, dialect=dialect)
    per, dper = per_entry(case, distinct[:, 0], distinct[:, 1])
    n = ind.size
    loss = float(np.sum(beta * per[inverse]) / n)
    grad = (beta * dper[inverse] / n).reshape(c.pred.shape)
    scale, grad_scale = rounding_scales(
        case.loss_kind, case.mu, c.pred, c.target, c.label_weight > 0, beta.reshape(c.pred.shape)
    )
    return Expected(loss, grad, f"the reference ({dialect})", scale, grad_scale)


def plain_mean(case: Case, call: Call) -> Expected:
    """The unweighted mean CE / ASL1 over valid entries, and its gradient: beta = 1."""
    per, dper = per_entry(case, call.pred, call.target)
    valid = call.label_weight > 0
    n = max(int(valid.sum()), 1)
    scale, grad_scale = rounding_scales(case.loss_kind, case.mu, call.pred, call.target, valid, np.ones(per.shape))
    return Expected(
        float(np.sum(per[valid]) / n),
        np.where(valid, dper, 0.0) / n,
        "the plain mean of CE/ASL1 over the valid entries (beta = 1)",
        scale,
        grad_scale,
    )


def zero(call: Call) -> Expected:
    return Expected(0.0, np.zeros(call.pred.shape), "zero: no entry is valid")


def edge_explains(case: Case, dialect: str, loss: float, grad: np.ndarray | None) -> bool:
    """Does the port agree with the reference once the entries whose g lies within rounding of
    a region edge (and not exactly on it) may sit on either side of it? (one call, no momentum)"""
    call = case.calls[0]
    valid = call.label_weight > 0
    g = gradient_norm(case.loss_kind, call.pred, call.target, case.mu)[valid]
    ambiguous = np.flatnonzero(near_edge(g, case.bins))
    if ambiguous.size == 0 or ambiguous.size > 8:
        return False
    per, dper = per_entry(case, call.pred[valid], call.target[valid])
    base = eq.region_index(g, case.bins)
    edges = np.round(g[ambiguous] * case.bins).astype(np.int64)
    n = int(valid.sum())
    for sides in itertools.product((0, 1), repeat=ambiguous.size):
        ind = base.copy()
        ind[ambiguous] = np.minimum(edges - 1 + np.array(sides), case.bins - 1)
        beta, _ = reference.harmonize(ind, bins=case.bins, momentum=0.0, state=None, dialect=dialect)
        full_beta = np.zeros(call.pred.shape)
        full_beta[valid] = beta
        want_grad = np.zeros(call.pred.shape)
        want_grad[valid] = beta * dper / n
        scale, grad_scale = rounding_scales(case.loss_kind, case.mu, call.pred, call.target, valid, full_beta)
        if (
            loss_error(loss, float(np.sum(beta * per) / n), scale) <= RTOL
            and grad_error(grad, want_grad, grad_scale) <= RTOL
        ):
            return True
    return False
