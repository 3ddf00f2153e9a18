"""impl_torch and impl_tf against the reference, written once for both (tests/backends.py) and run
on every device present: values and gradients, dialects, reductions, targets, the EMA, bad
input, dtypes, scale. Framework-only behaviour (compile, state_dict, Keras fit/saving, XLA,
tf.distribute) lives in test_torch.py / test_tf.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import reference
from backends import backend_params
from bad_inputs import BAD_HYPER, BAD_MU
from conftest import assert_catalogue_passes, examples
from ghm_conformance import cases as cs
from ghm_conformance import run_catalogue
from ghm_conformance.targets import bundled_port
from tolerances import TOLERANCE
from worked_examples import WORKED

REF = {"c": reference.ghm_c, "r": reference.ghm_r}
KINDS = ["c", "r"]
DIALECTS = ["paper", "mmdet"]


@pytest.fixture(params=backend_params(), scope="module")
def backend(request):
    cls, device = request.param
    return cls(device)


def close(got, want, tolerance: str = "float32", what: str = ""):
    np.testing.assert_allclose(got, want, **TOLERANCE[tolerance], err_msg=what)


# ---------------------------------------------------------------- the catalogue, through the port adapters


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_loss_object_passes_the_catalogue(backend, kind, dialect):
    port = bundled_port(backend.name, kind, dialect, device=backend.device)
    assert_catalogue_passes(run_catalogue(port, kind, dialect=dialect, max_examples=examples()), dialect)


# ---------------------------------------------------------------- values against the reference, table-driven

SETTINGS = [
    dict(reduction="mean"),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(reduction="mean", loss_weight=2.5),
    dict(reduction="none", loss_weight=-0.5),
]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_function_matches_reference(backend, kind, dialect, kwargs, data):
    case = data.draw(cs.single_call_case(kind, masked=True, entries="clear"), label="case")
    c = case.calls[0]
    got = backend.call(
        backend.function(kind),
        c.pred,
        c.target,
        c.label_weight,
        bins=case.bins,
        dialect=dialect,
        **case.hyper,
        **kwargs,
    )
    ref = REF[kind](c.pred, c.target, c.label_weight, bins=case.bins, dialect=dialect, **case.hyper, **kwargs)
    close(got.loss, ref.loss, what="loss")
    close(got.grad, ref.grad, what="gradient")


@pytest.mark.parametrize("example", WORKED, ids=lambda w: w.id)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_worked_examples(backend, example, dialect):
    got = backend.call(
        backend.function(example.kind),
        example.pred.astype(np.float32),
        example.target.astype(np.float32),
        dialect=dialect,
        **example.hyper,
    )
    close(got.loss, getattr(example, dialect), what=example.why)


@st.composite
def soft_entry(draw, bins: int):
    """(logit, soft target) whose g = |p - t| lies mid-region: p = t + g or t - g."""
    t = draw(st.integers(0, 20), label="target/20") / 20
    g = (draw(st.integers(0, bins - 1), label="region") + draw(st.integers(20, 80), label="offset%") / 100) / bins
    p = t + g if t + g < 0.999 else t - g
    assume(0.001 < p < 0.999)
    return np.float32(np.log(p / (1 - p))), np.float32(t)


@given(data=st.data())
def test_soft_targets_match_reference(backend, data):
    bins = data.draw(st.sampled_from([2, 3, 5, 10]), label="bins")
    entries = data.draw(st.lists(soft_entry(bins), min_size=1, max_size=12), label="entries")
    x = np.array([e[0] for e in entries])
    t = np.array([e[1] for e in entries])
    assume(not cs.near_edge(cs.gradient_norm("c", x, t, None), bins).any())
    got = backend.call(backend.function("c"), x, t, bins=bins)
    close(got.loss, reference.ghm_c(x, t, bins=bins).loss)


def _labels(n_classes: int):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, n_classes)).astype(np.float32)
    labels = np.array([0, n_classes, 2 % n_classes, 1, n_classes, 0])
    return x, labels


TARGET_FORMS = {
    "float one-hot": lambda labels, c: (labels[:, None] == np.arange(c)).astype(np.float32),
    "bool one-hot": lambda labels, c: labels[:, None] == np.arange(c),
    "int 0/1 shaped like pred": lambda labels, c: (labels[:, None] == np.arange(c)).astype(np.int64),
    "int64 class indices": lambda labels, c: labels.astype(np.int64),
    "int32 class indices": lambda labels, c: labels.astype(np.int32),
    "uint8 class indices": lambda labels, c: labels.astype(np.uint8),
}


@pytest.mark.parametrize("form", list(TARGET_FORMS))
@pytest.mark.parametrize("per_anchor_weight", [False, True])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_target_form_means_the_same(backend, form, per_anchor_weight, dialect):
    x, labels = _labels(3)
    lw = np.array([1, 1, 0, 1, 1, 1], np.float32)
    lw = lw if per_anchor_weight else np.repeat(lw[:, None], 3, axis=1)
    onehot = (labels[:, None] == np.arange(3)).astype(np.float64)
    got = backend.call(backend.function("c"), x, TARGET_FORMS[form](labels, 3), lw, bins=4, dialect=dialect)
    ref = reference.ghm_c(x, onehot, lw, bins=4, dialect=dialect)
    close(got.loss, ref.loss)
    close(got.grad, ref.grad)


def test_a_masked_anchor_may_hold_any_label(backend):
    x, labels = _labels(3)
    lw = np.array([1, 1, 0, 1, 1, 1], np.float32)
    odd = labels.copy()
    odd[2] = -1  # "ignore", as detectors write it
    got = backend.call(backend.function("c"), x, odd, lw, bins=4)
    close(got.loss, reference.ghm_c(x, labels, lw, bins=4).loss)


@pytest.mark.parametrize("dtype, n_classes", [("int8", 200), ("uint8", 300), ("int16", 40000)])
def test_narrow_integer_labels_are_compared_as_int64(backend, dtype, n_classes):
    # C does not fit the label dtype: a range check in that dtype would wrap C and poison everything
    x = np.zeros((4, n_classes), np.float32)
    labels = np.array([0, 1, 7, 3], dtype=dtype)
    got = backend.call(backend.function("c"), x, labels, bins=30)
    assert np.isfinite(got.loss), f"{dtype} labels with C = {n_classes} gave {got.loss}"
    close(got.loss, reference.ghm_c(x, labels.astype(np.int64), bins=30).loss)


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_a_64_bit_label_past_int32_is_out_of_range_not_wrapped(backend, dtype):
    # issue 28: impl_jax cast class indices to int32, so with 64-bit labels (JAX: x64) 2^32 + 1
    # was read as class 1 and moved the EMA; spec.md 7: labels are compared as int64 (NaN, state kept)
    x = np.zeros((3, 2), np.float32)
    obj = backend.loss("c", bins=10, momentum=0.5)
    for labels in (np.array([0, 2**32 + 1, 1], dtype), np.array([[0, 1], [2**32, 0], [1, 0]], dtype)):
        with backend.float64_mode():
            got = backend.call(obj, x, labels)
        assert np.isnan(got.loss), f"{dtype} label past 2^32 read as in range: loss {got.loss}"
        state, initialized = backend.state(obj)
        assert not initialized and not state.any(), "a poisoned batch moved the EMA"
    with backend.float64_mode():  # in range, the same dtype means the same as int32 labels
        got = backend.call(backend.function("c"), x, np.array([0, 2, 1], dtype), bins=10)
    close(got.loss, reference.ghm_c(x, np.array([0, 2, 1]), bins=10).loss)


SUBNORMAL = {"float16": 1e-6, "bfloat16": 1e-39, "float32": 1e-40, "float64": 1e-310}


@pytest.mark.parametrize("dtype", list(SUBNORMAL))
@pytest.mark.parametrize("kind", KINDS)
def test_a_subnormal_positive_weight_is_valid(backend, kind, dtype):
    # spec.md 1 (issue 28): w > 0 for the number as stored; XLA and TensorFlow on CPU flush
    # subnormals to zero in a comparison, which counted 1e-40 as masked there
    import ml_dtypes

    x, t = _batches(1, seed=6)[0]
    mask = np.ones(x.shape)
    mask[::4] = 0.0
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    lw = mask.astype(np_dtype)
    lw[1] = np.array(SUBNORMAL[dtype], np_dtype)  # a row of subnormal weights, each entry valid
    lw[2, 0] = np.array(-SUBNORMAL[dtype], np_dtype)  # and a negative subnormal one, masked
    mask[2, 0] = 0.0
    tiny = np.abs(lw[1].astype(np.float64))
    assert (tiny > 0).all() and (tiny < np.finfo(np_dtype).smallest_normal).all(), "the weights must be subnormal"
    with backend.float64_mode():
        got = backend.call(backend.function(kind), x, t, lw, bins=5)
    ref = REF[kind](x, t, mask, bins=5)
    assert not np.isclose(ref.loss, REF[kind](x, t, np.where(np.arange(16)[:, None] == 1, 0, mask), bins=5).loss)
    close(got.loss, ref.loss, what=f"{dtype} subnormal weights as valid entries")
    close(got.grad, ref.grad, what="gradient")


@pytest.mark.parametrize("shape", [(8,), (8, 1)])
def test_integer_target_with_one_logit_is_rejected_not_inverted(backend, shape):
    # spec.md 6: with C = 1 an integer target of shape pred.shape[:-1] could be a class index
    # (1 = background) or a binary label; reading it as a class index would invert the task.
    pred = np.zeros((8, 1), np.float32)
    y = np.array([0, 1] * 4)
    if len(shape) == 1:
        with pytest.raises(ValueError, match="ambiguous"):
            backend.call(backend.function("c"), pred, y)
    else:  # shaped like pred: unambiguous 0/1 labels, the same as floats
        got = backend.call(backend.function("c"), pred, y.reshape(shape), bins=10)
        close(got.loss, reference.ghm_c(pred, y.reshape(shape).astype(np.float64), bins=10).loss)


# ---------------------------------------------------------------- the EMA


def _batches(n=3, seed=0, shape=(16, 3)):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=shape).astype(np.float32), rng.integers(0, 2, size=shape).astype(np.float32)) for _ in range(n)
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_ema_state_matches_reference(backend, kind, dialect):
    hyper = {"bins": 10, "momentum": 0.75, "dialect": dialect}
    obj, state = backend.loss(kind, **hyper), None
    for x, t in _batches(4):
        got = backend.call(obj, x, t)
        ref = REF[kind](x, t, state=state, **hyper)
        state = ref.state
        close(got.loss, ref.loss)
        close(backend.state(obj)[0], ref.state, what="EMA state")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["pred", "target"])
def test_non_finite_valid_entry_gives_nan_and_keeps_the_state_bit_identical(backend, kind, bad, where):
    obj = backend.loss(kind, momentum=0.75)
    (x1, t1), (x2, t2) = _batches(2)
    backend.call(obj, x1, t1)
    before = backend.state(obj)
    (x2 if where == "pred" else t2)[3, 1] = bad
    lw = np.ones_like(x2)
    lw[0, 0] = 0.0
    got = backend.call(obj, x2, t2, lw)
    assert np.isnan(got.loss)
    valid = lw > 0
    assert np.isnan(got.grad[valid]).all() and not got.grad[~valid].any(), "NaN on valid entries, 0 on masked"
    after = backend.state(obj)
    assert np.array_equal(after[0], before[0]) and after[1] == before[1]


@pytest.mark.parametrize(
    "target, why",
    [
        (np.array([[0.0, 1.0], [1.5, 0.0], [0.0, 0.0]], np.float32), "soft target 1.5 > 1"),
        (np.array([[0.0, 1.0], [-0.5, 0.0], [0.0, 0.0]], np.float32), "soft target < 0"),
        (np.array([[0, 1], [2, 0], [0, 0]]), "integer label 2 shaped like pred"),
        (np.array([0, 3, 1]), "class index 3 > C = 2"),
        (np.array([0, -1, 1]), "class index -1"),
    ],
)
def test_out_of_range_valid_targets_poison_the_loss_and_keep_the_state(backend, target, why):
    obj = backend.loss("c", momentum=0.5)
    got = backend.call(obj, np.zeros((3, 2), np.float32), target)
    assert np.isnan(got.loss), why
    state, initialized = backend.state(obj)
    assert not initialized and not state.any(), why


def test_class_index_c_is_background_not_out_of_range(backend):
    got = backend.call(backend.function("c"), np.zeros((3, 2), np.float32), np.array([0, 2, 1]))
    assert np.isfinite(got.loss)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_entries_are_never_read(backend, kind):
    x, t = _batches(1)[0]
    lw = np.ones_like(x)
    lw[[1, 4, 7], [0, 2, 1]] = 0.0
    clean = backend.call(backend.function(kind), x, t, lw, bins=5)
    x2, t2 = x.copy(), t.copy()
    x2[1, 0], t2[4, 2], x2[7, 1], t2[7, 1] = np.nan, np.inf, np.inf, -7.0
    dirty = backend.call(backend.function(kind), x2, t2, lw, bins=5)
    assert np.array_equal(dirty.loss, clean.loss) and np.array_equal(dirty.grad, clean.grad)
    assert not dirty.grad[lw == 0].any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_empty_and_fully_masked_give_zero_and_keep_the_state(backend, kind, dialect):
    obj = backend.loss(kind, momentum=0.75, dialect=dialect)
    for shape in [(0, 4), (5, 4)]:
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        got = backend.call(obj, x, np.zeros(shape, np.float32), np.zeros(shape, np.float32))
        assert got.loss == 0.0 and not got.grad.any()
    state, initialized = backend.state(obj)
    assert not state.any() and not initialized


# ---------------------------------------------------------------- GHM-R at the ends of the float32 range


@pytest.mark.parametrize(
    "d, mu",
    [
        (0.0, 1e-30),
        (1e-30, 1e-30),
        (3e19, 0.02),
        (-1e30, 0.02),
        (3e38, 0.02),
        (1e-3, 1e30),
        (5.0, 1e20),
    ],
    ids=lambda v: f"{v:g}",
)
def test_ghm_r_is_exact_for_every_finite_residual_and_mu(backend, d, mu):
    # d * d overflows float32 past |d| ~ 1.8e19 and mu * mu underflows below ~1e-19: the loss must
    # not turn NaN (and update the state with the entry in region 0), nor 0 (spec.md 3, 7)
    pred = np.array([[d, 0.5]], np.float32)
    target = np.zeros_like(pred)
    obj = backend.loss("r", mu=mu, bins=10, momentum=0.5)
    got = backend.call(obj, pred, target)
    ref = reference.ghm_r(pred, target, mu=mu, bins=10, momentum=0.5)
    assert np.isfinite(got.loss) and np.all(np.isfinite(got.grad))
    close(got.loss, ref.loss)
    close(got.grad, ref.grad)
    close(backend.state(obj)[0], ref.state, what="EMA state")


@pytest.mark.parametrize("mu", BAD_MU + [1e-31, 1e31])
def test_mu_outside_the_float32_range_is_rejected(backend, mu):
    with pytest.raises(ValueError, match="mu"):
        backend.loss("r", mu=mu)


# ---------------------------------------------------------------- bad input, table-driven (spec.md 7)

Z3 = np.zeros(3, np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kwargs, match", BAD_HYPER, ids=lambda v: str(v))
def test_bad_hyper_parameters_raise_naming_the_argument(backend, kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        backend.loss(kind, **kwargs)
    if "momentum" not in kwargs:  # the stateless functions have no momentum
        with pytest.raises(ValueError, match=match):
            backend.apply(backend.function(kind), Z3, Z3, **kwargs)


BAD_ARRAYS = [  # (kind, pred, target, label_weight, exception, match)
    ("c", Z3, np.zeros(4, np.float32), None, ValueError, "target|y_true"),
    ("c", Z3, Z3, np.ones(2, np.float32), ValueError, "label_weight"),
    ("c", np.zeros((2, 3), np.float32), np.zeros(3, np.int64), None, ValueError, "class indices"),
    ("c", np.zeros((2, 3), np.float32), np.zeros((2, 2), np.int64), None, ValueError, "class indices"),
    ("c", np.zeros(3, np.int32), Z3, None, TypeError, "pred"),
    ("r", Z3, np.zeros(3, np.int64), None, TypeError, "target|y_true"),
    ("r", Z3, np.zeros(4, np.float32), None, ValueError, "target|y_true"),
    (
        "r",
        np.zeros((2, 3), np.float32),
        np.zeros((2, 3), np.float32),
        np.ones((3, 2), np.float32),
        ValueError,
        "label_weight",
    ),
]


@pytest.mark.parametrize("kind, pred, target, lw, exc, match", BAD_ARRAYS)
def test_bad_arrays_raise_naming_the_argument(backend, kind, pred, target, lw, exc, match):
    with pytest.raises(exc, match=match):
        backend.apply(backend.function(kind), pred, target, lw)


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", KINDS)
def test_half_inputs_use_float32_statistics(backend, dtype, kind):
    x, t = _batches(1, seed=3)[0]
    got = backend.call(backend.function(kind), x, t, pred_dtype=dtype, bins=10)
    xq = backend.rounded(x, dtype)  # the rounded inputs are what the loss sees
    assert not cs.near_edge(cs.gradient_norm(kind, xq, t, 0.02), 10).any()
    ref = REF[kind](xq, t, bins=10)
    close(got.loss, ref.loss, "half_inputs")
    # the float32 gradient, rounded once to the input's dtype (spec.md 8)
    close(got.grad, ref.grad, f"{dtype}_gradient", what="gradient")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_a_target_that_requires_grad_gets_the_reference_gradient(backend, kind, dialect, reduction):
    # spec.md 5: a soft teacher trained jointly gets lambda beta_i dL_i/dt_i / N, not a silent None
    case = _soft_case(kind)
    got, target_grad = backend.call_with_target(
        backend.function(kind), *case, bins=5, dialect=dialect, reduction=reduction, loss_weight=1.5
    )
    ref = REF[kind](*case, bins=5, dialect=dialect, reduction=reduction, loss_weight=1.5)
    close(got.loss, ref.loss, what="loss")
    close(got.grad, ref.grad, what="d loss / d pred")
    close(target_grad, ref.target_grad, what="d loss / d target")
    assert not target_grad[case[2] == 0].any(), "masked entries get no target gradient"


def _soft_case(kind: str):
    """Soft targets (GHM-C) or residuals (GHM-R), some entries masked, every g mid-region of 5."""
    rng = np.random.default_rng(11)
    g = (rng.integers(0, 5, size=(6, 4)) + rng.uniform(0.3, 0.7, size=(6, 4))) / 5
    if kind == "c":
        t = rng.integers(0, 5, size=(6, 4)) / 4 * 0.2 + 0.4  # soft: 0.4 .. 0.6
        x = np.log((t + g * (1 - t)) / (1 - t - g * (1 - t)))  # p = t + g (1 - t)
        g_actual = cs.gradient_norm("c", x, t, None)
    else:
        t = rng.normal(size=(6, 4))
        x = t + 0.02 * g / np.sqrt(1 - g * g) * rng.choice([-1.0, 1.0], size=(6, 4))
        g_actual = cs.gradient_norm("r", x, t, 0.02)
    assert not cs.near_edge(g_actual, 5).any()
    lw = (rng.random((6, 4)) < 0.8).astype(np.float32)
    return x.astype(np.float32), t.astype(np.float32), lw


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "wrt", [("pred", "pred"), ("target", "target"), ("pred", "target"), ("target", "pred")], ids="-".join
)
def test_a_second_derivative_through_the_loss_is_an_error_not_a_silent_zero(backend, kind, wrt):
    # spec.md 5: the gradient is formed with the loss; a gradient penalty through it, or a Hessian
    # in the target, must not get None or 0 (d/dt of d loss/dx is -beta/N, not 0) but a clear
    # error, in every argument (issue 28: JAX returned 0 for a tangent entering through the target)
    x, t, _ = _soft_case(kind)
    error, match = backend.SECOND_ORDER
    with pytest.raises(error, match=match):
        backend.second_derivative(backend.function(kind), x, t, wrt=wrt, bins=5)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_inputs_use_float64_statistics(backend, kind):
    x, t = _batches(1, seed=4)[0]
    x, t = x.astype(np.float64) * 1.37, t.astype(np.float64)
    with backend.float64_mode():
        got = backend.call(backend.function(kind), x, t, bins=7)
    ref = REF[kind](x, t, bins=7)
    close(got.loss, ref.loss, "float64")
    close(got.grad, ref.grad, "float64")


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_gradient_matches_central_differences_in_float64(backend, kind, dialect):
    rng = np.random.default_rng(1)
    bins, mu = 5, 0.5
    j = rng.integers(0, bins, size=12)
    g = (j + rng.uniform(0.3, 0.7, size=12)) / bins
    if kind == "c":
        t = rng.integers(0, 2, size=12).astype(float)
        x = np.log(g / (1 - g)) * np.where(t == 1, -1, 1)
    else:
        t = rng.normal(size=12)
        x = t + rng.choice([-1, 1], size=12) * mu * g / np.sqrt(1 - g * g)
    x, t = x.reshape(4, 3), t.reshape(4, 3)
    lw = (rng.integers(0, 4, size=(4, 3)) > 0).astype(np.float64)
    hyper = dict(bins=bins, dialect=dialect, **({"mu": mu} if kind == "r" else {}))
    f = backend.function(kind)
    h = 1e-6  # h * max|dg/dx| (1/4 for g, 1/mu for gr) stays far below the 0.3/bins margin to an edge
    fd = np.zeros_like(x)
    with backend.float64_mode():
        got = backend.call(f, x, t, lw, **hyper)
        for k in np.ndindex(x.shape):
            plus, minus = x.copy(), x.copy()
            plus[k] += h
            minus[k] -= h
            fd[k] = (backend.call(f, plus, t, lw, **hyper).loss - backend.call(f, minus, t, lw, **hyper).loss) / (2 * h)
    close(got.grad, fd, "finite_differences")


# ---------------------------------------------------------------- determinism and scale


def test_results_are_bit_identical_across_runs_and_thread_counts(backend):
    # What could make a result depend on scheduling: a race in the threaded CPU histogram (used
    # past 2^20 entries: a lost or doubled count moves beta), float atomics on an accelerator,
    # and a float reduction whose grouping follows the threads. torch runs once on 1 thread and
    # once on all of them, which the last of these would make differ; tf fixes its thread pools
    # at start-up, so it runs twice on the same pool (a race would still show).
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1 << 20 | 5, 1)).astype(np.float32) * 3
    t = (rng.random(x.shape) < 0.1).astype(np.float32)
    runs = []
    for threads in (1, None):
        with backend.threads(threads):
            obj = backend.loss("c", momentum=0.75)
            for _ in range(2):
                r = backend.call(obj, x, t)
            runs.append((r, backend.state(obj)[0]))
    (a, sa), (b, sb) = runs
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.grad, b.grad) and np.array_equal(sa, sb)


@pytest.mark.slow
def test_counts_are_exact_past_two_to_the_24(backend):
    n = (1 << 24) + 3  # a float32 count stalls at 2**24
    x = np.zeros((n, 1), np.float32)  # g = 0.5 exactly: region 15 of 30
    x[:5] = 4.0  # g = sigmoid(4) = 0.982: region 29
    t = np.zeros_like(x)
    # paper: the loss is the sum over the two regions of their mean CE, over M
    expected = (math.log(2) + math.log1p(math.exp(4.0))) / 30
    obj = backend.loss("c", momentum=0.5)
    got = backend.call(obj, x, t)
    close(got.loss, expected, "huge_sum")
    state = backend.state(obj)[0]
    assert state[15] == n - 5 and state[29] == 5, "the EMA starts at the exact first counts"
