"""What a port is called with: ``Call`` and ``Case``, and the Hypothesis strategies that draw
them over the domain spec.md defines (sections 1-6).

Every random choice a property makes is drawn here, through Hypothesis and with a label, and
kept in the case (``Case.draws``): the permutation, the scaled label weights, the values put in
masked entries, the finite-difference steps. A case therefore determines its check completely,
is shrunk as a whole, and replays exactly (``ghm_conformance.repro``).

Entries come in five families, mixed in every batch:

- *clear*: g mid-region (offset 0.15-0.85 of the region), unambiguous in any precision;
- *near an edge*: g between 1.2e-5 and 2e-3 from an interior edge k/M: clear of float32 rounding
  (which is ~1e-7) and of the edge excuse (1e-5), yet close enough that binning a half-precision
  g, a g rounded on the way, or floor(g (M - 1e-4)) lands in the wrong region;
- *exact*: values whose g is exact and may sit exactly on an edge: pred = 0 (p = 1/2), dyadic
  soft targets (g = 1/4, 1/2, 3/4 exactly), saturated logits (g = 0 or 1), zero residuals;
- *raw*: any float32 logit / residual in a wide range;
- *soft* GHM-C targets in [0, 1] (p and t both vary).

Batches hold 1-16 entries element by element (shrinkable entry by entry), or 17 to a few
thousand entries drawn from a seed (not powers of two), so that counts, chunks and fast paths
that start at larger N are exercised. Momentum sequences hold up to 8 calls, with fully masked
calls anywhere, first and consecutive included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from reference import equations as eq

BINS = (1, 2, 3, 4, 5, 7, 8, 10, 30)
MOMENTA = (0.5, 0.75, 0.9)
MUS = (0.02, 0.1, 0.5)
EDGE_SLACK = 1e-5  # in units of g: a float32 port may put g this close to an edge on either side
NEAR_EDGE = (1.2e-5, 2e-3)  # distance of a near-edge g from its edge, in units of g (just past EDGE_SLACK)


@dataclass
class Call:
    pred: np.ndarray
    target: np.ndarray
    label_weight: np.ndarray

    @property
    def size(self) -> int:
        return int(self.pred.size)


@dataclass
class Case:
    """One input of a property: which GHM loss (``loss_kind``: "c" for GHM-C, "r" for GHM-R),
    its hyper-parameters, the calls of one port instance, and the property's other draws."""

    loss_kind: str
    bins: int
    momentum: float = 0.0
    mu: float | None = None
    calls: list[Call] = field(default_factory=list)
    draws: dict = field(default_factory=dict)

    @property
    def hyper(self) -> dict:
        return {} if self.loss_kind == "c" else {"mu": self.mu}

    def describe(self) -> str:
        h = f"bins={self.bins}, momentum={self.momentum}" + (f", mu={self.mu}" if self.loss_kind == "r" else "")
        sizes = ", ".join(str(c.size) for c in self.calls)
        return f"GHM-{self.loss_kind.upper()} {h}, {len(self.calls)} call(s) of {sizes} entries"


def gradient_norm(loss_kind: str, pred, target, mu) -> np.ndarray:
    """g (GHM-C, Eq. 3) or gr (GHM-R, Eq. 18) of float32 inputs, in float64."""
    x, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return eq.gradient_norm(x, t) if loss_kind == "c" else eq.asl1_gradient_norm(x - t, mu)


def nearest_interior_edge(g: np.ndarray, bins: int) -> np.ndarray:
    return np.clip(np.round(g * bins), 1, max(bins - 1, 1)) / bins


def near_edge(g: np.ndarray, bins: int) -> np.ndarray:
    """Entries whose g lies within rounding of an interior region edge k/M (0 < k < M) without
    being exactly on it: those may legitimately land on either side (spec.md 8). A g exactly on
    an edge is not excused: exact values decide the edge semantics."""
    g = np.asarray(g, np.float64)
    k_over_m = nearest_interior_edge(g, bins)
    return (bins > 1) & (np.abs(g - k_over_m) < EDGE_SLACK) & (g * bins != np.round(g * bins))


# ---------------------------------------------------------------- single entries


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _entry_for_g(loss_kind: str, g: float, t: float, sign: float, mu: float | None) -> tuple[np.float32, np.float32]:
    """A float32 (pred, target) whose gradient norm is g (to float32 rounding of the inputs)."""
    if loss_kind == "c":
        if t + g >= 1.0 and t - g <= 0.0:  # no p in (0, 1) is g away from this soft t: a binary one is
            t = 0.0 if sign > 0 else 1.0
        p = t + g if (sign > 0 and t + g < 1.0) or t - g <= 0.0 else t - g
        p = min(max(p, 1e-7), 1 - 1e-7)
        return np.float32(_logit(p)), np.float32(t)
    assert mu is not None, "a GHM-R entry needs mu"
    g = min(g, 1.0 - 1e-7)
    return np.float32(t + sign * mu * g / np.sqrt(1.0 - g * g)), np.float32(t)


# Each family of entries is written once, against a source of choices: Hypothesis's draws (entry by
# entry, shrinkable) or a NumPy generator (batches of thousands drawn from a seed).


class HypothesisChoices:
    def __init__(self, draw):
        self.draw = draw

    def integer(self, lo: int, hi: int, label: str) -> int:
        return self.draw(st.integers(lo, hi), label=label)

    def uniform(self, lo: float, hi: float, label: str) -> float:
        return self.draw(st.floats(lo, hi), label=label)  # rounded to float32 by the entry it makes

    def choice(self, options, label: str):
        return self.draw(st.sampled_from(options), label=label)


class SeededChoices:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def integer(self, lo: int, hi: int, label: str) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def uniform(self, lo: float, hi: float, label: str) -> float:
        return float(self.rng.uniform(lo, hi))

    def choice(self, options, label: str):
        return options[int(self.rng.integers(len(options)))]


def _target(src, loss_kind: str, soft: bool) -> float:
    if loss_kind == "r":
        return src.integer(-8, 8, "target*4") / 4.0
    if soft:
        return src.integer(0, 20, "soft target*20") / 20.0
    return float(src.choice([0.0, 1.0], "binary target"))


def clear_pair(src, loss_kind: str, bins: int, mu: float | None, soft: bool, regions=None):
    """g at least 0.15 of a region from either edge (in one of ``regions`` if given)."""
    j = src.choice(list(regions), "region") if regions is not None else src.integer(0, bins - 1, "region")
    g = (j + src.integer(15, 85, "offset%") / 100.0) / bins
    t = _target(src, loss_kind, soft)
    return _entry_for_g(loss_kind, g, t, src.choice([1.0, -1.0], "sign"), mu)


def near_edge_pair(src, loss_kind: str, bins: int, mu: float | None, soft: bool):
    """g within NEAR_EDGE of an interior edge, on either side (clear of float32 rounding)."""
    if bins < 2:
        return clear_pair(src, loss_kind, bins, mu, soft)
    k = src.integer(1, bins - 1, "edge")
    distance = 10.0 ** src.uniform(float(np.log10(NEAR_EDGE[0])), float(np.log10(NEAR_EDGE[1])), "log10 distance")
    g = k / bins + src.choice([1.0, -1.0], "side") * distance
    t = _target(src, loss_kind, soft)
    return _entry_for_g(loss_kind, g, t, src.choice([1.0, -1.0], "sign"), mu)


def exact_entries(loss_kind: str, *, saturated: bool = False) -> list[tuple[float, float]]:
    """Inputs whose g is exact in float32 and float64 alike: on an edge whenever k/M is 1/2 (even
    bins) or a quarter (bins divisible by 4), or g = 0. With ``saturated``, also g = 1 (exactly,
    or by float32 rounding for GHM-R): the last region's own property, ``saturated``."""
    if loss_kind == "c":
        exact = [(0.0, 0.0), (0.0, 1.0), (0.0, 0.25), (0.0, 0.75), (0.0, 0.5), (60.0, 1.0), (-60.0, 0.0), (17.0, 1.0)]
        return exact + ([(60.0, 0.0), (-60.0, 1.0)] if saturated else [])
    exact = [(0.0, 0.0), (1.5, 1.5), (-2.0, -2.0)]
    return exact + ([(1e4, 0.0), (-1e4, 0.0), (0.0, 200.0)] if saturated else [])


def exact_pair(src, loss_kind: str, saturated: bool = False):
    x, t = src.choice(exact_entries(loss_kind, saturated=saturated), "exact entry")
    return np.float32(x), np.float32(t)


def raw_pair(src, loss_kind: str, soft: bool):
    """Any logit in [-12, 12] (GHM-C), any residual in [-3, 3] (GHM-R)."""
    t = _target(src, loss_kind, soft)
    x = src.uniform(-12.0, 12.0, "logit") if loss_kind == "c" else t + src.uniform(-3.0, 3.0, "residual")
    return np.float32(x), np.float32(t)


@st.composite
def clear_entry(draw, loss_kind: str, bins: int, mu: float | None, *, soft: bool = False, region=None):
    return clear_pair(HypothesisChoices(draw), loss_kind, bins, mu, soft, None if region is None else [region])


@st.composite
def near_edge_entry(draw, loss_kind: str, bins: int, mu: float | None, *, soft: bool = False):
    return near_edge_pair(HypothesisChoices(draw), loss_kind, bins, mu, soft)


@st.composite
def exact_entry(draw, loss_kind: str, *, saturated: bool = False):
    return exact_pair(HypothesisChoices(draw), loss_kind, saturated)


@st.composite
def raw_entry(draw, loss_kind: str, *, soft: bool = False):
    return raw_pair(HypothesisChoices(draw), loss_kind, soft)


def any_entry(loss_kind: str, bins: int, mu: float | None, *, soft: bool):
    return st.one_of(
        clear_entry(loss_kind, bins, mu, soft=soft),
        near_edge_entry(loss_kind, bins, mu, soft=soft),
        exact_entry(loss_kind),
        raw_entry(loss_kind, soft=soft),
    )


# ---------------------------------------------------------------- batches


def _shape(draw, n_entries: int) -> tuple[int, int]:
    """A (rows, cols) shape holding n_entries, cols dividing it."""
    divisors = [c for c in (1, 2, 3, 4, 5, 80) if n_entries % c == 0]
    cols = draw(st.sampled_from(divisors), label="columns")
    return n_entries // cols, cols


def _call(pairs, weights, shape) -> Call:
    pred = np.array([p for p, _ in pairs], np.float32).reshape(shape)
    target = np.array([t for _, t in pairs], np.float32).reshape(shape)
    return Call(pred, target, np.asarray(weights, np.float32).reshape(shape))


def _mask(draw, n: int, masked: bool) -> np.ndarray:
    """Label weights: all 1, or mostly 1 with some 0 and at least one entry valid."""
    if not masked:
        return np.ones(n, np.float32)
    w = np.asarray(
        draw(st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.0]), min_size=n, max_size=n), label="label weights"), np.float32
    )
    if not w.any():
        w[draw(st.integers(0, n - 1), label="kept valid")] = 1.0
    return w


def seeded_batch(
    loss_kind: str,
    bins: int,
    mu: float | None,
    n: int,
    seed: int,
    *,
    soft: bool,
    masked: bool,
    exact_share: float = 0.05,
) -> Call:
    """n entries of every family from a NumPy seed (large batches; Hypothesis shrinks n and seed),
    the clear ones in some regions only (others stay empty, as in a detector's batch)."""
    rng = np.random.default_rng(seed)
    src = SeededChoices(rng)
    family = rng.choice(4, size=n, p=[0.55, 0.25, exact_share, 0.2 - exact_share])
    occupied = rng.permutation(bins)[: max(1, int(rng.integers(1, bins + 1)))]
    draw_family = (
        lambda: clear_pair(src, loss_kind, bins, mu, soft, occupied),
        lambda: near_edge_pair(src, loss_kind, bins, mu, soft),
        lambda: exact_pair(src, loss_kind),
        lambda: raw_pair(src, loss_kind, soft),
    )
    pairs = [draw_family[f]() for f in family]
    weights = np.where(rng.random(n) < 0.25, 0.0, 1.0) if masked else np.ones(n)
    if masked and not weights.any():
        weights[0] = 1.0
    cols = next(c for c in (80, 5, 4, 3, 2, 1) if n % c == 0)
    return _call(pairs, weights, (n // cols, cols))


@st.composite
def batch(
    draw,
    loss_kind: str,
    bins: int,
    mu: float | None,
    *,
    masked: bool,
    soft: bool = False,
    entries=None,
    min_size: int = 1,
    large: bool = True,
):
    """One call: 1-16 entries drawn one by one (mostly), or 17 to 3000 from a seed."""
    if large and draw(st.integers(0, 5), label="large batch?") == 0:
        n = draw(st.integers(17, 3000), label="entries")
        seed = draw(st.integers(0, 2**32 - 1), label="seed")
        return seeded_batch(loss_kind, bins, mu, n, seed, soft=soft, masked=masked)
    element = entries if entries is not None else any_entry(loss_kind, bins, mu, soft=soft)
    n = draw(st.integers(min_size, 16), label="entries")
    pairs = [draw(element, label="entry") for _ in range(n)]
    return _call(pairs, _mask(draw, n, masked), _shape(draw, n))


def _hyper(draw, loss_kind: str, bins=None):
    bins = draw(st.sampled_from(BINS), label="bins") if bins is None else bins
    mu = draw(st.sampled_from(MUS), label="mu") if loss_kind == "r" else None
    return bins, mu


def _soft(draw, loss_kind: str) -> bool:
    return loss_kind == "c" and draw(st.booleans(), label="soft targets?")


# ---------------------------------------------------------------- cases, per property family


@st.composite
def single_call_case(
    draw,
    loss_kind: str,
    *,
    masked: bool = False,
    bins=None,
    min_size: int = 1,
    entries: str = "any",
    large: bool = True,
):
    """One call, no momentum. ``entries``: "any" (every family) or "clear" (mid-region only, for
    the metamorphic properties, whose two runs must agree exactly on every region)."""
    bins, mu = _hyper(draw, loss_kind, bins)
    soft = _soft(draw, loss_kind)
    element = clear_entry(loss_kind, bins, mu, soft=soft) if entries == "clear" else None
    call = draw(
        batch(
            loss_kind,
            bins,
            mu,
            masked=masked,
            soft=soft,
            entries=element,
            min_size=min_size,
            large=large and entries == "any",
        ),
        label="call",
    )
    return Case(loss_kind, bins, 0.0, mu, [call])


@st.composite
def momentum_case(draw, loss_kind: str, *, empty_calls: bool = False):
    """2 to 8 successive calls with momentum whose entries revisit the same regions; with
    ``empty_calls``, 1 to 3 of them (first and consecutive ones included) have every entry
    masked (they must leave the EMA state as it was). Non-empty calls are unmasked: this
    property judges the EMA, not masking."""
    bins, mu = _hyper(draw, loss_kind)
    momentum = draw(st.sampled_from(MOMENTA), label="momentum")
    soft = _soft(draw, loss_kind)
    n_calls = draw(st.integers(2, 8), label="calls")
    regions = draw(st.lists(st.integers(0, bins - 1), min_size=1, max_size=3, unique=True), label="recurring regions")
    element = st.one_of(
        st.sampled_from(regions).flatmap(lambda j: clear_entry(loss_kind, bins, mu, soft=soft, region=j)),
        exact_entry(loss_kind),
    )
    calls = [
        draw(batch(loss_kind, bins, mu, masked=False, soft=soft, entries=element, large=False), label="call")
        for _ in range(n_calls)
    ]
    if empty_calls:
        empties = draw(
            st.lists(st.integers(0, n_calls - 1), min_size=1, max_size=min(3, n_calls - 1), unique=True),
            label="empty calls",
        )
        for i in empties:
            calls[i].label_weight[...] = 0.0
    return Case(loss_kind, bins, momentum, mu, calls)


@st.composite
def uniform_case(draw, loss_kind: str):
    """Every region holds the same number k of entries: beta = 1 for all (both dialects)."""
    bins, mu = _hyper(draw, loss_kind, draw(st.sampled_from((1, 2, 3, 5, 10)), label="bins"))
    soft = _soft(draw, loss_kind)
    k = draw(st.integers(1, 3), label="per region")
    pairs = [
        draw(clear_entry(loss_kind, bins, mu, soft=soft, region=j), label="entry")
        for j in range(bins)
        for _ in range(k)
    ]
    order = draw(st.permutations(range(len(pairs))), label="order")
    pairs = [pairs[i] for i in order]
    return Case(loss_kind, bins, 0.0, mu, [_call(pairs, np.ones(len(pairs)), _shape(draw, len(pairs)))])


@st.composite
def saturated_case(draw, loss_kind: str):
    """Some valid entries with g = 1 exactly (float32 and, for GHM-C, float64 too)."""
    bins, mu = _hyper(draw, loss_kind)
    n_sat = draw(st.integers(1, 4), label="saturated")
    if loss_kind == "c":
        sat = [
            draw(
                st.sampled_from([(np.float32(60.0), np.float32(0.0)), (np.float32(-60.0), np.float32(1.0))]),
                label="saturated entry",
            )
            for _ in range(n_sat)
        ]
    else:
        sat = [
            (np.float32(draw(st.sampled_from([1e4, -1e4]), label="saturated pred")), np.float32(0.0))
            for _ in range(n_sat)
        ]
    others = [
        draw(clear_entry(loss_kind, bins, mu), label="entry") for _ in range(draw(st.integers(0, 6), label="others"))
    ]
    pairs = sat + others
    return Case(loss_kind, bins, 0.0, mu, [_call(pairs, np.ones(len(pairs)), _shape(draw, len(pairs)))])


@st.composite
def permutation_case(draw, loss_kind: str):
    case = draw(single_call_case(loss_kind, entries="clear"), label="case")
    n = case.calls[0].size
    case.draws["permutation"] = np.array(draw(st.permutations(range(n)), label="permutation"), np.int64)
    return case


# Values a masked entry may hold. In the domain (``masked``): any finite logit a network gives
# and a target in [0, 1] (GHM-C), any moderate residual (GHM-R): a port that computes the loss
# over every entry and multiplies by a zero weight (the official code) is right on them. Outside
# it (``masked_unread``, a robustness note): NaN, Inf, values whose loss overflows float32, and
# GHM-C targets out of [0, 1].
MASKED_FINITE = {"c": ((-20.0, 20.0), (0.0, 1.0)), "r": ((-10.0, 10.0), (-10.0, 10.0))}
MASKED_JUNK = {
    "c": ([np.nan, np.inf, -np.inf, 1e30, -1e30], [np.nan, np.inf, -np.inf, 3.0, -7.5]),
    "r": ([np.nan, np.inf, -np.inf, 1e30, -1e30], [np.nan, np.inf, -np.inf, 1e30, -3e38]),
}


def _masked_values(draw, loss_kind: str, n: int, finite: bool) -> tuple[np.ndarray, np.ndarray]:
    if finite:
        (plo, phi), (tlo, thi) = MASKED_FINITE[loss_kind]
        preds = st.floats(plo, phi, width=32)
        targets = st.sampled_from([0.0, 1.0, 0.5, 0.25, 0.9]) if loss_kind == "c" else st.floats(tlo, thi, width=32)
    else:
        preds, targets = (st.sampled_from(v) for v in MASKED_JUNK[loss_kind])
    return (
        np.array(draw(st.lists(preds, min_size=n, max_size=n), label="masked preds"), np.float32),
        np.array(draw(st.lists(targets, min_size=n, max_size=n), label="masked targets"), np.float32),
    )


@st.composite
def masked_case(draw, loss_kind: str, *, finite: bool = True):
    """A call with valid and masked entries (at least one of each), and other values for the
    masked entries: finite ones in the domain, or (``finite=False``) NaN, Inf and out-of-range."""
    case = draw(single_call_case(loss_kind, masked=True, min_size=2, entries="clear"), label="case")
    w = case.calls[0].label_weight.reshape(-1)
    w[0] = 1.0  # at least one valid entry ...
    w[draw(st.integers(1, w.size - 1), label="a masked entry")] = 0.0  # ... and at least one masked
    case.draws["masked_pred"], case.draws["masked_target"] = _masked_values(
        draw, loss_kind, int((w == 0).sum()), finite
    )
    return case


def masked_unread_case(loss_kind: str):
    return masked_case(loss_kind, finite=False)


@st.composite
def weight_case(draw, loss_kind: str):
    case = draw(single_call_case(loss_kind, masked=True, entries="clear"), label="case")
    w = case.calls[0].label_weight
    scales = np.array(
        draw(
            st.lists(st.sampled_from([0.5, 2.0, 3.0, 1e-3, 7.25]), min_size=w.size, max_size=w.size),
            label="positive weights",
        ),
        np.float32,
    ).reshape(w.shape)
    case.draws["weights"] = np.where(w > 0, scales, 0.0).astype(np.float32)
    return case


@st.composite
def all_masked_case(draw, loss_kind: str):
    return draw(single_call_case(loss_kind, masked=False), label="case")


@st.composite
def finite_difference_case(draw, loss_kind: str):
    bins = draw(st.sampled_from((1, 2, 3, 5, 10)), label="bins")
    mu = draw(st.sampled_from((0.1, 0.5)), label="mu") if loss_kind == "r" else None
    soft = _soft(draw, loss_kind)
    call = draw(
        batch(
            loss_kind,
            bins,
            mu,
            masked=False,
            soft=soft,
            entries=clear_entry(loss_kind, bins, mu, soft=soft),
            large=False,
        ),
        label="call",
    )
    case = Case(loss_kind, bins, 0.0, mu, [call])
    # the step, as a fraction of the largest one that keeps every entry inside its region
    case.draws["step_fraction"] = draw(st.sampled_from([0.5, 0.25, 0.1]), label="step fraction")
    return case


# ---------------------------------------------------------------- cases a class-index port can take


def _same_g(pred: np.ndarray, target: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """The logits that give each entry whose target changed (a soft target made binary, a second
    hot column dropped) the gradient norm it was drawn with: p = g against t = 0, 1 - g against
    t = 1, as ``_entry_for_g`` draws them. Otherwise a g drawn clear of the edges moves anywhere
    (p = 0.1 drawn with t = 0.35, g = 0.25, has g = 0.1 once t = 0: an edge, to rounding).
    Logits of exact values (pred = 0, saturated) are kept: their g stays exact."""
    pred = pred.astype(np.float32)
    changed = (onehot != target) & (pred != 0) & (np.abs(pred) < 17)
    g = gradient_norm("c", pred, target, None)
    p = np.clip(np.where(onehot == 0, g, 1.0 - g), 1e-7, 1 - 1e-7)
    with np.errstate(divide="ignore", invalid="ignore"):
        redrawn = np.log(p / (1.0 - p)).astype(np.float32)
    return np.where(changed, redrawn, pred)


def as_class_index_case(case: Case) -> Case:
    """The case as a class-index port (mmdetection's labels (N,), C = background) can receive
    it: every row binary and one-hot or all zero (its first target >= 1/2 kept), one label
    weight per row (its first), and at least two columns (a confidently negative column is
    added to single-column calls). The property's draws are mapped to the new layout."""
    out = Case(case.loss_kind, case.bins, case.momentum, case.mu, [], dict(case.draws))
    widened = False
    for c in case.calls:
        pred, target, weight = (
            a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1) for a in (c.pred, c.target, c.label_weight)
        )
        if pred.shape[1] == 1:
            widened = True
            pred = np.concatenate([pred, np.full_like(pred, -60.0)], axis=1)
            target = np.concatenate([target, np.zeros_like(target)], axis=1)
            weight = np.concatenate([weight, weight], axis=1)
        hot = target >= 0.5
        first = np.where(hot.any(axis=1), hot.argmax(axis=1), -1)
        onehot = (np.arange(pred.shape[1])[None, :] == first[:, None]).astype(np.float32)
        rows = np.repeat(weight[:, :1], pred.shape[1], axis=1).astype(np.float32)
        out.calls.append(Call(_same_g(pred, target, onehot), onehot, rows))
    cols = out.calls[0].pred.shape[1] if out.calls else 1
    if "permutation" in case.draws:
        old_cols = 1 if widened else cols
        rows_in_order = list(dict.fromkeys((np.asarray(case.draws["permutation"]) // old_cols).tolist()))
        out.draws["permutation"] = (np.array(rows_in_order)[:, None] * cols + np.arange(cols)).ravel()
    if "weights" in case.draws:
        w = case.draws["weights"].reshape(len(out.calls[0].pred), -1)[:, :1]
        out.draws["weights"] = np.repeat(w, cols, axis=1).astype(np.float32)
    return out


def as_anchor_weight_case(case: Case) -> Case:
    """The case as a port with one label weight per row (anchor) can receive it: every row masked
    whole or not at all, by its first entry's weight (the property's weight draws likewise)."""
    out = Case(case.loss_kind, case.bins, case.momentum, case.mu, [], dict(case.draws))
    for c in case.calls:
        w = (
            c.label_weight.reshape(c.label_weight.shape[0], -1)
            if c.label_weight.ndim > 1
            else c.label_weight.reshape(-1, 1)
        )
        rows = np.repeat(w[:, :1], w.shape[1], axis=1).reshape(c.label_weight.shape).astype(np.float32)
        out.calls.append(Call(c.pred, c.target, rows))
    if "weights" in case.draws and out.calls:
        w = case.draws["weights"].reshape(len(out.calls[0].pred), -1)
        out.draws["weights"] = np.repeat(w[:, :1], w.shape[1], axis=1).reshape(case.draws["weights"].shape)
    return out
