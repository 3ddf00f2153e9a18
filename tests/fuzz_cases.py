"""Random calls of a GHM loss as users make them, with the reference's answer for each (issue 28's
fuzz sweep): shapes of 1 to 3 dimensions (empty ones too), pred dtypes from bfloat16 to float64,
every target form (soft, binary, bool, integer 0/1, class indices of several integer dtypes),
label weights per entry or per anchor in several dtypes with odd values (negative, NaN, -0.0,
subnormal), garbage in masked entries, and 1 to 3 calls with momentum.

Hypothesis draws a ``Plan`` (small, shrinkable); the arrays follow from it and its seed. Every
valid entry's g is at least a fifth of a region from an edge, as the loss sees it (after the
rounding of the pred dtype), so the fast losses must agree with the reference to the tolerances
of tests/tolerances.py. Used by tests/test_fuzz.py (impl_jax under jit, grad, vmap) and by
tests/keras_backend_checks.py (the Keras losses on each backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

import reference
from ghm_conformance import cases as cs

REF = {"c": reference.ghm_c, "r": reference.ghm_r}
TARGET_FORMS = ("binary", "soft", "bool", "int 0/1", "int32 indices", "int64 indices", "uint8 indices")
WEIGHT_DTYPES = ("float32", "float16", "float64", "bool", "int32")
HALF = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
SUBNORMAL = {"float16": 1e-6, "float32": 1e-40, "float64": 1e-310}


@dataclass(frozen=True)
class Plan:
    kind: str
    dialect: str
    reduction: str
    bins: int
    momentum: float
    loss_weight: float
    mu: float
    shape: tuple[int, ...]
    pred_dtype: str
    target_form: str
    weights: str | None  # None, "entry" or "anchor"
    weight_dtype: str
    garbage: bool  # NaN / Inf / out-of-range values in masked entries
    calls: int
    transform: str
    seed: int

    def hyper(self) -> dict:
        h = dict(
            bins=self.bins,
            momentum=self.momentum,
            dialect=self.dialect,
            reduction=self.reduction,
            loss_weight=self.loss_weight,
        )
        return {**h, "mu": self.mu} if self.kind == "r" else h

    @property
    def class_indices(self) -> bool:
        return self.target_form.endswith("indices")


@st.composite
def plans(
    draw,
    *,
    transforms: tuple[str, ...],
    pred_dtypes=("float32", "float16", "bfloat16", "float64"),
    weight_dtypes=WEIGHT_DTYPES,
    max_dim: int = 5,
):
    kind = draw(st.sampled_from("cr"), label="kind")
    target_form = draw(st.sampled_from(TARGET_FORMS), label="target form") if kind == "c" else "real"
    indices = target_form.endswith("indices")
    ndim = draw(st.integers(1, 3), label="ndim")
    shape = tuple(draw(st.integers(0 if d < ndim - 1 else 1, max_dim), label=f"dim {d}") for d in range(ndim))
    if indices and shape[-1] < 2:  # class indices need C >= 2 (spec.md 6)
        shape = shape[:-1] + (2,)
    momentum = draw(st.sampled_from((0.0, 0.0, 0.5, 0.9)), label="momentum")
    weights = draw(st.sampled_from((None, "entry", "anchor")), label="label weights")
    return Plan(
        kind=kind,
        dialect=draw(st.sampled_from(("paper", "mmdet")), label="dialect"),
        reduction=draw(st.sampled_from(("mean", "sum", "none")), label="reduction"),
        bins=draw(st.sampled_from((1, 2, 3, 5, 10, 30)), label="bins"),
        momentum=momentum,
        loss_weight=draw(st.sampled_from((1.0, 2.5, -0.5)), label="loss weight"),
        mu=draw(st.sampled_from(cs.MUS), label="mu"),
        shape=shape,
        pred_dtype=draw(st.sampled_from(pred_dtypes), label="pred dtype"),
        target_form=target_form,
        weights=weights,
        weight_dtype=draw(st.sampled_from(weight_dtypes), label="weight dtype"),
        garbage=draw(st.booleans(), label="garbage in masked entries"),
        calls=1 if momentum == 0.0 else draw(st.integers(1, 3), label="calls"),
        transform=draw(st.sampled_from(transforms), label="transform"),
        seed=draw(st.integers(0, 2**32 - 1), label="seed"),
    )


@dataclass
class Call:
    pred: np.ndarray  # in the plan's pred dtype
    target: np.ndarray  # as the loss is given it
    label_weight: np.ndarray | None  # as the loss is given it
    ref_pred: np.ndarray = field(repr=False)  # float64, the values the loss sees
    ref_target: np.ndarray = field(repr=False)  # float64, one-hot rows for class indices
    ref_mask: np.ndarray = field(repr=False)  # float64 0/1 per entry


def _p_for(g: np.ndarray, t: np.ndarray, up: np.ndarray) -> np.ndarray:
    """p with |p - t| = g on the chosen side where it fits in (0, 1), else on the other."""
    p = np.where(up, t + g, t - g)
    p = np.where((p <= 0) | (p >= 1), np.where(up, t - g, t + g), p)
    return np.clip(p, 1e-6, 1 - 1e-6)


def _one_call(plan: Plan, rng: np.random.Generator) -> Call:
    shape, bins = plan.shape, plan.bins
    anchors = shape[:-1]
    # the mask first: an invalid entry's values are never read, so they may be anything
    if plan.weights is None:
        mask = np.ones(shape, bool)
    else:
        mask_shape = shape if plan.weights == "entry" else anchors
        mask = rng.random(mask_shape) < 0.75
        if plan.weights == "anchor":
            mask = np.broadcast_to(mask[..., None], shape).copy()
    g = (rng.integers(0, bins, size=shape) + rng.uniform(0.2, 0.8, size=shape)) / bins
    if plan.kind == "r":
        t = rng.normal(size=shape) * 2
        x = t + rng.choice([-1.0, 1.0], size=shape) * plan.mu * g / np.sqrt(1 - g * g)
        target = t.astype(np.float32)
    else:
        form = plan.target_form
        if plan.class_indices:
            labels = rng.integers(0, shape[-1] + 1, size=anchors)  # C = background
            t = (labels[..., None] == np.arange(shape[-1])).astype(np.float64)
        elif form == "soft":
            t = rng.integers(0, 5, size=shape) / 4.0
        else:
            t = (rng.random(shape) < 0.3).astype(np.float64)
        p = _p_for(g, t, rng.random(shape) < 0.5)
        x = np.log(p / (1 - p))
        if plan.class_indices:
            target = labels.astype(plan.target_form.split()[0])
        else:
            target = {"binary": t, "soft": t, "bool": t > 0.5, "int 0/1": t.astype(np.int64)}[form]
            target = target.astype(np.float32) if target.dtype == np.float64 else target
    pred = x.astype(HALF.get(plan.pred_dtype, plan.pred_dtype))
    ref_pred = pred.astype(np.float64)
    ref_target = t if plan.kind == "c" else target.astype(np.float64)
    if plan.garbage and (~mask).any():  # masked entries hold what detectors leave there
        pred[~mask] = np.array(rng.choice([np.nan, np.inf, -np.inf, 1e4]), pred.dtype)
        if plan.class_indices:
            dead = ~mask.any(axis=-1)  # an anchor's label is read unless its whole row is masked
            target[dead] = np.array(200 if target.dtype == np.uint8 else -1, target.dtype)
        elif target.dtype.kind == "f":
            target[~mask] = np.float32(rng.choice([np.nan, 7.0, -3.0]))
        elif target.dtype.kind == "i":
            target[~mask] = 5
    label_weight = (
        None if plan.weights is None else _weights(plan, mask if plan.weights == "entry" else mask[..., 0], rng)
    )
    return Call(pred, target, label_weight, ref_pred, ref_target, mask.astype(np.float64))


def _weights(plan: Plan, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label weights that mean ``valid``: positive values (a subnormal one among them) where it is
    True; 0, -0.0, negative or NaN where it is False, as far as the dtype holds them."""
    dtype = plan.weight_dtype
    if dtype == "bool":
        return valid.copy()
    if dtype == "int32":
        return np.where(valid, rng.integers(1, 4, size=valid.shape), rng.choice([0, -2], size=valid.shape)).astype(
            np.int32
        )
    positive = rng.choice([1.0, 0.5, 3.0, SUBNORMAL[dtype]], size=valid.shape)
    masked = rng.choice([0.0, -0.0, -1.0, np.nan], size=valid.shape)
    return np.where(valid, positive, masked).astype(dtype)


def calls(plan: Plan, problems: int = 1) -> list[list[Call]]:
    """``plan.calls`` successive calls of ``problems`` independent problems (vmap maps over them),
    every valid entry clear of a region edge as the loss sees it."""
    rng = np.random.default_rng(plan.seed)
    out = []
    for _ in range(plan.calls):
        row = []
        for _ in range(problems):
            for _ in range(50):
                call = _one_call(plan, rng)
                g = cs.gradient_norm(plan.kind, call.ref_pred, call.ref_target, plan.mu)
                if not (cs.near_edge(g, plan.bins) & (call.ref_mask > 0)).any():
                    break
            else:
                raise AssertionError(f"no call clear of the region edges in 50 tries: {plan}")
            row.append(call)
        out.append(row)
    return out


def expected(plan: Plan, sequence: list[Call]) -> list:
    """The reference's result of each call of ``sequence`` (one problem), the state carried."""
    state, out = None, []
    hyper = plan.hyper()
    for call in sequence:
        ref = REF[plan.kind](call.ref_pred, call.ref_target, call.ref_mask, state=state, **hyper)
        state = ref.state
        out.append(ref)
    return out


def tolerances(plan: Plan) -> tuple[dict, dict]:
    """(loss tolerance, gradient tolerance) from tests/tolerances.py."""
    from tolerances import TOLERANCE

    half = plan.pred_dtype in HALF
    loss = TOLERANCE["half_inputs" if half else "float32"]
    grad = TOLERANCE[f"{plan.pred_dtype}_gradient"] if half else TOLERANCE["float32"]
    return loss, grad
