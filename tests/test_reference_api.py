"""reference.ghm_c / ghm_r: worked examples, dialects, EMA, reductions, targets and bad input."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bad_inputs import BAD_HYPER, BAD_MU
from reference import equations as eq
from reference import ghm_c, ghm_r
from worked_examples import WORKED

LOG2 = math.log(2)


# ---------------------------------------------------------------- worked examples (spec.md 4.3)


@pytest.mark.parametrize("example", WORKED, ids=lambda w: w.id)
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_worked_examples(example, dialect):
    fn = ghm_c if example.kind == "c" else ghm_r
    got = fn(example.pred, example.target, dialect=dialect, **example.hyper).loss
    assert got == pytest.approx(getattr(example, dialect), rel=1e-12), example.why


def test_worked_example_values_printed_in_the_spec():
    # spec.md 4.3 prints these rounded values; they must stay what the reference computes
    assert round(ghm_c(np.array([5.0, -5.0]), np.array([1.0, 0.0]), bins=2).loss, 7) == 0.0033577
    assert round(ghm_c(np.array([5.0, -5.0]), np.array([1.0, 0.0]), bins=2, dialect="mmdet").loss, 7) == 0.0067153


# ---------------------------------------------------------------- the identities of spec.md 2.3 / 4.2

logits = st.lists(st.floats(-8, 8), min_size=1, max_size=40)


def _region_means(x, t, bins):
    g = eq.gradient_norm(x, t)
    ind = eq.region_index(g, bins)
    ce = eq.cross_entropy(x, t)
    return [ce[ind == j].mean() for j in range(bins) if np.any(ind == j)]


@given(logits, st.integers(1, 30), st.randoms(use_true_random=False))
def test_loss_is_average_of_region_means(xs, bins, rnd):
    x = np.array(xs)
    t = np.array([float(rnd.random() < 0.5) for _ in xs])
    means = _region_means(x, t, bins)
    assert ghm_c(x, t, bins=bins).loss == pytest.approx(sum(means) / bins, rel=1e-10)
    assert ghm_c(x, t, bins=bins, dialect="mmdet").loss == pytest.approx(sum(means) / len(means), rel=1e-10)


@given(logits, st.integers(1, 30))
def test_gradient_is_beta_times_dl_over_n(xs, bins):
    x = np.array(xs)
    t = (x > 0).astype(float)
    r = ghm_c(x, t, bins=bins, loss_weight=2.5)
    np.testing.assert_allclose(r.grad, 2.5 * r.weights * (eq.sigmoid(x) - t) / x.size, rtol=1e-12)


@pytest.mark.parametrize("kind", ["c", "r"])
@pytest.mark.parametrize("bins", [1, 5])
def test_target_grad_is_the_derivative_with_beta_constant(kind, bins):
    # spec.md 5: d loss / d t_i = lambda beta_i dL_i/dt_i / N; beta is piecewise constant in t, so
    # central differences with a step that keeps every g inside its region give the same
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3)) * 2
    t = rng.uniform(0.2, 0.8, size=(4, 3)) if kind == "c" else x + rng.normal(size=(4, 3)) * 0.03
    lw = (rng.random((4, 3)) < 0.75).astype(float)
    fn = ghm_c if kind == "c" else ghm_r
    r = fn(x, t, lw, bins=bins, loss_weight=1.5)
    h = 1e-7
    fd = np.zeros_like(t)
    for k in np.ndindex(t.shape):
        plus, minus = t.copy(), t.copy()
        plus[k] += h
        minus[k] -= h
        fd[k] = (
            fn(x, plus, lw, bins=bins, loss_weight=1.5).loss - fn(x, minus, lw, bins=bins, loss_weight=1.5).loss
        ) / (2 * h)
    np.testing.assert_allclose(r.target_grad, fd, rtol=1e-6, atol=1e-9)
    assert ghm_c(x, np.zeros(4, np.int64), bins=bins).target_grad is None, "class indices have no gradient"


def test_one_region_is_mean_bce_and_mean_asl1():
    x = np.array([[0.3, -2.0], [4.0, 1.0]])
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    for dialect in ("paper", "mmdet"):
        assert ghm_c(x, t, bins=1, dialect=dialect).loss == pytest.approx(eq.cross_entropy(x, t).mean())
        assert ghm_r(x, t, bins=1, dialect=dialect).loss == pytest.approx(eq.asl1(x - t, 0.02).mean())


# ---------------------------------------------------------------- EMA (spec.md 4.1, 4.2)

X1, T1 = np.array([0.0, 0.0, 3.0, -2.0]), np.array([0.0, 1.0, 0.0, 0.0])
X2, T2 = np.array([1.5, -1.0]), np.array([1.0, 1.0])


def test_paper_ema_starts_from_first_counts_and_updates_every_region():
    r1 = ghm_c(X1, T1, bins=4, momentum=0.75)
    assert r1.loss == pytest.approx(ghm_c(X1, T1, bins=4).loss)
    counts1 = eq.region_counts(eq.region_index(eq.gradient_norm(X1, T1), 4), 4)
    np.testing.assert_array_equal(r1.state, counts1)
    r2 = ghm_c(X2, T2, bins=4, momentum=0.75, state=r1.state)
    counts2 = eq.region_counts(eq.region_index(eq.gradient_norm(X2, T2), 4), 4)
    np.testing.assert_allclose(r2.state, 0.75 * counts1 + 0.25 * counts2)  # empty regions decay too


def test_mmdet_accumulator_starts_at_zero_and_skips_empty_regions():
    r1 = ghm_c(X1, T1, bins=4, momentum=0.75, dialect="mmdet")
    assert r1.loss == pytest.approx(ghm_c(X1, T1, bins=4, dialect="mmdet").loss / 0.25)  # 4x
    r2 = ghm_c(X2, T2, bins=4, momentum=0.75, state=r1.state, dialect="mmdet")
    counts2 = eq.region_counts(eq.region_index(eq.gradient_norm(X2, T2), 4), 4)
    expected = np.where(counts2 > 0, 0.75 * r1.state + 0.25 * counts2, r1.state)
    np.testing.assert_allclose(r2.state, expected)


@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_call_without_valid_entry_leaves_state(dialect):
    r1 = ghm_c(X1, T1, bins=4, momentum=0.75, dialect=dialect)
    r2 = ghm_c(X2, T2, np.zeros(2), bins=4, momentum=0.75, state=r1.state, dialect=dialect)
    assert r2.loss == 0.0
    np.testing.assert_array_equal(r2.state, r1.state)
    first = ghm_c(X2, T2, np.zeros(2), bins=4, momentum=0.75, dialect=dialect)
    assert first.state is None if dialect == "paper" else first.state.tolist() == [0.0] * 4


def test_state_is_none_without_momentum():
    assert ghm_c(X1, T1).state is None and ghm_r(X1, T1).state is None


# ---------------------------------------------------------------- reductions, masks, targets


def test_reductions_and_loss_weight():
    lw = np.array([1.0, 0.0, 2.0, 1.0])
    mean = ghm_c(X1, T1, lw, bins=4)
    total = ghm_c(X1, T1, lw, bins=4, reduction="sum")
    none = ghm_c(X1, T1, lw, bins=4, reduction="none", loss_weight=3.0)
    assert total.loss == pytest.approx(mean.loss * 3)  # N = 3 valid entries
    assert none.loss.shape == X1.shape and none.loss[1] == 0.0
    assert none.loss.sum() == pytest.approx(3.0 * total.loss)
    np.testing.assert_allclose(none.grad, 3.0 * total.grad)


def test_masked_entries_are_ignored_even_if_nan_or_out_of_range():
    lw = np.array([1.0, 0.0, 1.0])
    base = ghm_c(np.array([0.5, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]), lw, bins=5)
    odd = ghm_c(np.array([0.5, np.nan, -1.0]), np.array([1.0, 7.0, 0.0]), lw, bins=5)
    assert odd.loss == base.loss and odd.grad[1] == 0.0 and odd.weights[1] == 0.0
    np.testing.assert_array_equal(odd.grad, base.grad)


def test_label_weight_values_act_only_as_a_mask():
    a = ghm_c(X1, T1, np.array([1.0, 1.0, 0.0, 1.0]), bins=4)
    b = ghm_c(X1, T1, np.array([0.3, 9.0, 0.0, 2.0]), bins=4)
    assert a.loss == b.loss


@pytest.mark.parametrize(
    "weight",
    [np.float16(1e-6), np.float32(1e-40), np.float64(1e-310), np.float64(np.inf)],
    ids=lambda w: f"{w.dtype}-{w}",
)
def test_a_subnormal_or_infinite_positive_weight_is_valid_and_signed_zeros_are_masked(weight):
    # spec.md 1: w > 0 for the number as stored, decided on its bits (no flush-to-zero mode can mask it)
    base = ghm_c(X1, T1, np.array([1.0, 1.0, 0.0, 1.0]), bins=4)
    w = np.array([1.0, weight, -0.0, 1.0], weight.dtype)
    got = ghm_c(X1, T1, w, bins=4)
    assert got.loss == base.loss and got.weights[1] > 0 and got.weights[2] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_non_finite_valid_entry_gives_nan_and_keeps_state(bad, dialect):
    r1 = ghm_c(X1, T1, bins=4, momentum=0.75, dialect=dialect)
    x = X2.copy()
    x[0] = bad
    r2 = ghm_c(x, T2, bins=4, momentum=0.75, state=r1.state, dialect=dialect)
    assert math.isnan(r2.loss) and np.all(np.isnan(r2.weights)) and np.all(np.isnan(r2.grad))
    np.testing.assert_array_equal(r2.state, r1.state)
    rr = ghm_r(x, T2, bins=4)
    assert math.isnan(rr.loss)


def test_all_masked_and_empty_give_zero_without_nan():
    for fn in (ghm_c, ghm_r):
        for dialect in ("paper", "mmdet"):
            r = fn(X1, T1, np.zeros(4), dialect=dialect)
            assert r.loss == 0.0 and not np.any(r.grad) and not np.any(np.isnan(r.weights))
            e = fn(np.zeros((0, 3)), np.zeros((0, 3)), dialect=dialect)
            assert e.loss == 0.0 and e.grad.shape == (0, 3)


def test_integer_class_targets_equal_one_hot_and_c_is_background():
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0], [0.2, 0.4, 0.6]])
    labels = np.array([2, 3, 0])  # 3 = C = background
    onehot = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], float)
    a, b = ghm_c(x, labels, bins=5), ghm_c(x, onehot, bins=5)
    assert a.loss == b.loss
    per_anchor = ghm_c(x, labels, np.array([1.0, 0.0, 1.0]), bins=5)
    full = ghm_c(x, onehot, np.repeat([[1.0], [0.0], [1.0]], 3, axis=1), bins=5)
    assert per_anchor.loss == full.loss
    # a masked anchor may carry any label (e.g. -1 for "ignore")
    assert ghm_c(x, np.array([2, -1, 0]), np.array([1.0, 0.0, 1.0]), bins=5).loss == per_anchor.loss


def test_soft_targets():
    x, t = np.array([0.3, -0.7]), np.array([0.25, 0.9])
    r = ghm_c(x, t, bins=1)
    assert r.loss == pytest.approx(np.mean(-(t * np.log(eq.sigmoid(x)) + (1 - t) * np.log(1 - eq.sigmoid(x)))))


def test_ghm_r_saturated_gr_lands_in_last_region():
    r = ghm_r(np.array([1e4, 0.001]), np.array([0.0, 0.0]), bins=10, reduction="none")
    assert np.all(r.weights == 2 / (1 * 10))  # each alone in its region: N / (1 * M)


# ---------------------------------------------------------------- bad input (spec.md 7)

Z = np.zeros(3)


@pytest.mark.parametrize(
    "kwargs, match",
    BAD_HYPER
    + [
        (dict(state=np.zeros(30)), "state"),
        (dict(momentum=0.5, state=np.zeros(4)), "state"),
        (dict(momentum=0.5, state=-np.ones(30)), "state"),
    ],
)
def test_bad_hyper_parameters_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ghm_c(Z, Z, **kwargs)


@pytest.mark.parametrize("mu", BAD_MU)
def test_bad_mu_raises(mu):
    with pytest.raises(ValueError, match="mu"):
        ghm_r(Z, Z, mu=mu)


def test_bad_arrays_raise_naming_the_argument():
    with pytest.raises(ValueError, match="target"):
        ghm_c(Z, np.zeros(4))
    with pytest.raises(ValueError, match="label_weight"):
        ghm_c(Z, Z, np.ones(2))
    with pytest.raises(ValueError, match="label_weight"):
        ghm_c(Z, Z, np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\]"):
        ghm_c(Z, np.array([0.0, 1.5, 0.0]))
    with pytest.raises(ValueError, match="class labels"):
        ghm_c(np.zeros((2, 3)), np.array([0, 4]))
    with pytest.raises(ValueError, match="class labels"):
        ghm_c(np.zeros((2, 3)), np.array([0, -1]))
    with pytest.raises(ValueError, match="pred"):
        ghm_c(np.array(["a", "b"]), np.zeros(2))
    with pytest.raises(ValueError, match="target"):
        ghm_r(Z, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        ghm_c(np.zeros((2, 3)), np.zeros(3, dtype=np.int64))


def test_per_anchor_label_weight_broadcasts_over_the_last_axis():
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]])
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for fn in (ghm_c, ghm_r):
        per_anchor = fn(x, t, np.array([1.0, 0.0]), bins=5)
        full = fn(x, t, np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), bins=5)
        assert per_anchor.loss == full.loss
        np.testing.assert_array_equal(per_anchor.grad, full.grad)
