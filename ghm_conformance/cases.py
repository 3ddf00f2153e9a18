"""Test cases for the catalogue: what a port is called with, and Hypothesis strategies for them.

Two families of inputs:
- *clear* inputs are built from (region j, offset u in [0.15, 0.85]) so every gradient norm
  sits well inside its region, in float32 and float64 alike; metamorphic properties use them,
  because a g within rounding of an edge can legitimately land on either side (spec.md 8);
- *raw* inputs are arbitrary float32 logits / regression values, with exact and saturated
  special values; the reference-value property uses them and explains edge disagreements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from reference import equations as eq

BINS = (1, 2, 3, 4, 5, 7, 10, 30)
MOMENTA = (0.5, 0.75, 0.9)
MUS = (0.02, 0.1, 0.5)
EDGE_SLACK = 1e-5  # in units of g: a float32 port may put g this close to an edge on either side


@dataclass
class Call:
    pred: np.ndarray
    target: np.ndarray
    label_weight: np.ndarray


@dataclass
class Case:
    loss: str  # "c" or "r"
    bins: int
    momentum: float = 0.0
    mu: float | None = None
    calls: list[Call] = field(default_factory=list)

    @property
    def hyper(self) -> dict:
        return {} if self.loss == "c" else {"mu": self.mu}

    def describe(self) -> str:
        h = f"bins={self.bins}, momentum={self.momentum}" + (f", mu={self.mu}" if self.loss == "r" else "")
        return f"GHM-{self.loss.upper()} {h}, {len(self.calls)} call(s)"


def gradient_norm(loss: str, pred, target, mu) -> np.ndarray:
    """g (GHM-C, Eq. 3) or gr (GHM-R, Eq. 18) of float32 inputs, in float64."""
    x, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return eq.gradient_norm(x, t) if loss == "c" else eq.asl1_gradient_norm(x - t, mu)


def near_edge(g: np.ndarray, bins: int) -> np.ndarray:
    """Entries whose g lies within rounding of an interior region edge k/M (0 < k < M)."""
    k = np.clip(np.round(g * bins), 1, bins - 1)
    return (bins > 1) & (np.abs(g - k / bins) < EDGE_SLACK)


# ---------------------------------------------------------------- element strategies

def _offset():
    return st.integers(15, 85).map(lambda k: k / 100.0)


@st.composite
def clear_entry(draw, loss: str, bins: int, mu: float | None, region=None):
    """One (pred, target) pair whose gradient norm lies in ``region`` (drawn if None),
    at least 0.15 / bins from either edge."""
    j = draw(st.integers(0, bins - 1)) if region is None else region
    g = (j + draw(_offset())) / bins
    if loss == "c":
        t = draw(st.sampled_from([0.0, 1.0]))
        x = np.log(g / (1 - g))  # p = g
        x = x if t == 0.0 else -x  # t = 1: p = 1 - g
    else:
        t = draw(st.integers(-8, 8).map(lambda k: k / 4.0))
        sign = draw(st.sampled_from([1.0, -1.0]))
        x = t + sign * mu * g / np.sqrt(1.0 - g * g)
    return np.float32(x), np.float32(t)


def raw_pred(loss: str):
    if loss == "c":
        specials = st.sampled_from([0.0, 60.0, -60.0, 1.0, -1.0])
        body = st.floats(-12, 12, width=32, allow_subnormal=False)
    else:
        specials = st.sampled_from([0.0, 200.0, -200.0, 0.01, -0.01])
        body = st.floats(-3, 3, width=32, allow_subnormal=False)
    return st.one_of(specials, body, body)


def raw_target(loss: str):
    if loss == "c":
        return st.sampled_from([0.0, 1.0])
    return st.one_of(st.just(0.0), st.floats(-2, 2, width=32, allow_subnormal=False))


def _mask(draw, n: int, *, allow_masked: bool) -> np.ndarray:
    """Label weights: mostly 1, some 0; at least one entry stays valid (the all-masked input
    has its own property, so that a port failing it fails there and only there)."""
    if not allow_masked:
        return np.ones(n, np.float32)
    w = np.asarray(draw(st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.0]), min_size=n, max_size=n)), np.float32)
    if not w.any():
        w[draw(st.integers(0, n - 1))] = 1.0
    return w


def _shape(draw, n_entries: int) -> tuple[int, int]:
    """A (rows, cols) shape holding n_entries, cols dividing it."""
    divisors = [c for c in range(1, 5) if n_entries % c == 0]
    cols = draw(st.sampled_from(divisors))
    return n_entries // cols, cols


def _call(pairs, weights, shape) -> Call:
    pred = np.array([p for p, _ in pairs], np.float32).reshape(shape)
    target = np.array([t for _, t in pairs], np.float32).reshape(shape)
    return Call(pred, target, np.asarray(weights, np.float32).reshape(shape))


def _hyper(draw, loss: str, bins=None):
    bins = draw(st.sampled_from(BINS)) if bins is None else bins
    mu = draw(st.sampled_from(MUS)) if loss == "r" else None
    return bins, mu


# ---------------------------------------------------------------- case strategies

@st.composite
def raw_case(draw, loss: str, bins=None, allow_masked: bool = True):
    """One call of arbitrary float32 inputs, no momentum."""
    bins, mu = _hyper(draw, loss, bins)
    n = draw(st.integers(1, 16))
    pairs = [(np.float32(draw(raw_pred(loss))), np.float32(draw(raw_target(loss)))) for _ in range(n)]
    return Case(loss, bins, 0.0, mu, [_call(pairs, _mask(draw, n, allow_masked=allow_masked), _shape(draw, n))])


@st.composite
def clear_call(draw, loss: str, bins: int, mu, *, allow_masked: bool, min_size: int = 1, max_size: int = 16):
    n = draw(st.integers(min_size, max_size))
    pairs = [draw(clear_entry(loss, bins, mu)) for _ in range(n)]
    return _call(pairs, _mask(draw, n, allow_masked=allow_masked), _shape(draw, n))


@st.composite
def clear_case(draw, loss: str, *, allow_masked: bool = True, bins=None, min_size: int = 1):
    bins, mu = _hyper(draw, loss, bins)
    call = draw(clear_call(loss, bins, mu, allow_masked=allow_masked, min_size=min_size))
    return Case(loss, bins, 0.0, mu, [call])


@st.composite
def momentum_case(draw, loss: str, *, empty_call: bool = False):
    """2 to 4 successive calls with momentum; with ``empty_call`` one call after the first has
    every entry masked (it must leave the EMA state as it was)."""
    bins, mu = _hyper(draw, loss)
    momentum = draw(st.sampled_from(MOMENTA))
    n_calls = draw(st.integers(3 if empty_call else 2, 4))
    calls = [draw(clear_call(loss, bins, mu, allow_masked=True)) for _ in range(n_calls)]
    if empty_call:
        calls[draw(st.integers(1, n_calls - 2))].label_weight[...] = 0.0
    return Case(loss, bins, momentum, mu, calls)


@st.composite
def uniform_case(draw, loss: str):
    """Every region holds the same number k of entries: beta = 1 for all (both dialects)."""
    bins, mu = _hyper(draw, loss, draw(st.sampled_from((1, 2, 3, 5, 10))))
    k = draw(st.integers(1, 3))
    pairs = [draw(clear_entry(loss, bins, mu, region=j)) for j in range(bins) for _ in range(k)]
    order = draw(st.permutations(range(len(pairs))))
    pairs = [pairs[i] for i in order]
    return Case(loss, bins, 0.0, mu, [_call(pairs, np.ones(len(pairs)), _shape(draw, len(pairs)))])


@st.composite
def saturated_case(draw, loss: str):
    """Some valid entries with g = 1 exactly (float32 and, for GHM-C, float64 too)."""
    bins, mu = _hyper(draw, loss)
    n_sat = draw(st.integers(1, 4))
    if loss == "c":
        sat = [draw(st.sampled_from([(np.float32(60.0), np.float32(0.0)), (np.float32(-60.0), np.float32(1.0))]))
               for _ in range(n_sat)]
    else:
        sat = [(np.float32(draw(st.sampled_from([1e4, -1e4]))), np.float32(0.0)) for _ in range(n_sat)]
    others = [draw(clear_entry(loss, bins, mu)) for _ in range(draw(st.integers(0, 6)))]
    pairs = sat + others
    return Case(loss, bins, 0.0, mu, [_call(pairs, np.ones(len(pairs)), _shape(draw, len(pairs)))])
