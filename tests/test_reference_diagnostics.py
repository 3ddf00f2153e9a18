"""reference diagnostics (spec.md 13): hand-worked values on the worked examples of spec 4.3, the
EMA's density, the calls that harmonize nothing, class-index positives, and the identities that
tie the fields together (the reference's grad_mass comes from its own gradient, not from beta)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import equations as eq
from reference import ghm_c, ghm_r
from reference.diagnostics import shares

S5 = 1.0 / (1.0 + math.exp(5.0))  # sigmoid(-5): g of pred = 5, target = 1 and of pred = -5, target = 0


def _only(j: int, value: float, bins: int) -> np.ndarray:
    a = np.zeros(bins)
    a[j] = value
    return a


def assert_fields(d, **want):
    for name, value in want.items():
        np.testing.assert_allclose(getattr(d, name), value, rtol=1e-12, atol=0, err_msg=name)


# ---------------------------------------------------------------- worked examples (spec.md 4.3)


@pytest.mark.parametrize("dialect, beta", [("paper", 1 / 30), ("mmdet", 1.0)])
def test_zeros_two_by_three(dialect, beta):
    # g = 1/2 exactly for all 6 entries: region 15 of 30, R_15 = N = 6, plain |dL/dx| = 1/2 each
    d = ghm_c(np.zeros((2, 3)), np.zeros((2, 3)), dialect=dialect).diagnostics
    assert d.counts.dtype == np.int64 and d.counts.tolist() == _only(15, 6, 30).tolist()
    assert (d.valid, d.nonempty) == (6, 1)
    assert_fields(
        d,
        density=_only(15, 6.0, 30),
        beta=_only(15, beta, 30),
        plain_mass=_only(15, 6 * 0.5 / 6, 30),
        grad_mass=_only(15, beta * 6 * 0.5 / 6, 30),
        positive_fraction=0.0,
        grad_share=_only(15, 1.0, 30),
    )


@pytest.mark.parametrize("dialect, beta", [("paper", 0.5), ("mmdet", 1.0)])
def test_five_minus_five(dialect, beta):
    d = ghm_c(np.array([5.0, -5.0]), np.array([1.0, 0.0]), bins=2, dialect=dialect).diagnostics
    assert d.counts.tolist() == [2, 0] and (d.valid, d.nonempty) == (2, 1)
    assert_fields(
        d,
        density=[2.0, 0.0],
        beta=[beta, 0.0],
        plain_mass=[2 * S5 / 2, 0.0],
        grad_mass=[beta * 2 * S5 / 2, 0.0],
        positive_fraction=0.5,
    )


@pytest.mark.parametrize("dialect, beta", [("paper", 0.1), ("mmdet", 1.0)])
def test_ghm_r_two_far_residuals(dialect, beta):
    mu = 0.02
    gr = [4.0 / math.hypot(4.0, mu), 5.0 / math.hypot(5.0, mu)]  # both > 0.9999: region 9 of 10
    d = ghm_r(np.array([5.0, -5.0]), np.array([1.0, 0.0]), dialect=dialect).diagnostics
    assert d.counts.tolist() == _only(9, 2, 10).tolist() and (d.valid, d.nonempty) == (2, 1)
    assert_fields(
        d, beta=_only(9, beta, 10), plain_mass=_only(9, sum(gr) / 2, 10), grad_mass=_only(9, beta * sum(gr) / 2, 10)
    )
    assert math.isnan(d.positive_fraction), "GHM-R has no positives to count"


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_sum_and_none_drop_the_one_over_n_and_keep_the_absolute_loss_weight(reduction):
    d = ghm_c(np.array([5.0, -5.0]), np.array([1.0, 0.0]), bins=2, reduction=reduction, loss_weight=-2.0).diagnostics
    assert_fields(d, plain_mass=[2 * S5, 0.0], grad_mass=[2.0 * 0.5 * 2 * S5, 0.0])


# ---------------------------------------------------------------- the EMA's density


def test_paper_ema_density_and_beta_over_two_calls():
    # call 1: 6 entries in region 15; call 2: 2 entries in region 0. alpha = 1/2, S^(0) := R^(1).
    z, x2, t2 = np.zeros((2, 3)), np.array([5.0, -5.0]), np.array([1.0, 0.0])
    first = ghm_c(z, z, momentum=0.5)
    d = ghm_c(x2, t2, momentum=0.5, state=first.state).diagnostics
    density = _only(15, 3.0, 30) + _only(0, 1.0, 30)  # 0.5 * 6 + 0.5 * 0, and 0.5 * 0 + 0.5 * 2
    assert_fields(first.diagnostics, density=_only(15, 6.0, 30), beta=_only(15, 1 / 30, 30))
    assert_fields(d, density=density, beta=_only(0, 2 / (1.0 * 30), 30))  # region 15 is empty now: beta 0
    assert d.counts.tolist() == _only(0, 2, 30).tolist()


def test_mmdet_accumulator_density_and_beta_over_two_calls():
    # the accumulator starts at 0 and moves only where R_j > 0
    z, x2, t2 = np.zeros((2, 3)), np.array([5.0, -5.0]), np.array([1.0, 0.0])
    first = ghm_c(z, z, momentum=0.5, dialect="mmdet")
    d = ghm_c(x2, t2, momentum=0.5, state=first.state, dialect="mmdet").diagnostics
    assert_fields(first.diagnostics, density=_only(15, 3.0, 30), beta=_only(15, 6 / 3.0, 30))
    assert_fields(d, density=_only(15, 3.0, 30) + _only(0, 1.0, 30), beta=_only(0, 2 / 1.0, 30))


# ---------------------------------------------------------------- calls that harmonize nothing


@pytest.mark.parametrize("kind", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_a_call_without_valid_entries_reports_zeros_and_the_state_as_it_stands(kind, dialect):
    fn = ghm_c if kind == "c" else ghm_r
    x, t = np.array([[0.3, -1.0]]), np.array([[1.0, 0.0]])
    state = fn(x, t, bins=4, momentum=0.5, dialect=dialect).state
    for momentum, want_density in ((0.0, np.zeros(4)), (0.5, state)):
        d = fn(
            x, t, np.zeros_like(x), bins=4, momentum=momentum, dialect=dialect, state=state if momentum else None
        ).diagnostics
        assert d.counts.tolist() == [0] * 4 and (d.valid, d.nonempty) == (0, 0)
        assert_fields(
            d,
            density=want_density,
            beta=np.zeros(4),
            grad_mass=np.zeros(4),
            plain_mass=np.zeros(4),
            grad_share=np.zeros(4),
        )
        assert d.positive_fraction == 0.0 if kind == "c" else math.isnan(d.positive_fraction)


@pytest.mark.parametrize("kind", ["c", "r"])
def test_a_poisoned_call_reports_zero_counts_and_nan_floats(kind):
    fn = ghm_c if kind == "c" else ghm_r
    x, t = np.array([[0.3, np.nan, 2.0]]), np.array([[1.0, 0.0, 0.0]])
    d = fn(x, t, bins=4, momentum=0.5).diagnostics
    assert d.counts.tolist() == [0] * 4 and (d.valid, d.nonempty) == (0, 0)
    for name in ("density", "beta", "grad_mass", "plain_mass", "positive_fraction"):
        assert np.isnan(getattr(d, name)).all(), name


# ---------------------------------------------------------------- targets


def test_class_index_positives_are_the_label_entries_of_valid_anchors():
    # C = 3; anchor 1 is background (label 3), anchor 2 is masked: 6 valid entries, 1 positive
    d = ghm_c(np.zeros((3, 3)), np.array([0, 3, 1]), np.array([1.0, 1.0, 0.0]), bins=4).diagnostics
    assert d.valid == 6 and d.positive_fraction == pytest.approx(1 / 6, rel=1e-12)


def test_soft_targets_are_not_positives():
    d = ghm_c(np.zeros(4), np.array([1.0, 0.999, 0.5, 1.0]), bins=4).diagnostics
    assert d.positive_fraction == 0.5


# ---------------------------------------------------------------- identities


@given(
    xs=st.lists(st.floats(-6, 6), min_size=1, max_size=30),
    bins=st.integers(1, 12),
    dialect=st.sampled_from(["paper", "mmdet"]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    loss_weight=st.sampled_from([1.0, -0.5, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_fields_agree_with_each_other_and_with_the_gradient(xs, bins, dialect, reduction, loss_weight, seed):
    rng = np.random.default_rng(seed)
    x = np.array(xs)
    t = (rng.random(x.size) < 0.3).astype(float)
    lw = (rng.random(x.size) < 0.8).astype(float)
    r = ghm_c(x, t, lw, bins=bins, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    d, valid = r.diagnostics, lw > 0
    n = int(valid.sum())
    assert d.valid == n == d.counts.sum() and d.nonempty == np.count_nonzero(d.counts)
    if n == 0:
        return
    # grad_mass (from the reference's own gradient) = |lambda| beta_j plain_mass_j (spec.md 13)
    np.testing.assert_allclose(d.grad_mass, abs(loss_weight) * d.beta * d.plain_mass, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(d.grad_mass.sum(), np.abs(r.grad).sum(), rtol=1e-12)
    c = 1 / n if reduction == "mean" else 1.0
    np.testing.assert_allclose(d.plain_mass.sum(), c * eq.gradient_norm(x, t)[valid].sum(), rtol=1e-12)
    np.testing.assert_allclose(
        d.beta[eq.region_index(eq.gradient_norm(x, t)[valid], bins)], r.weights[valid], rtol=1e-12
    )
    assert (d.beta[d.counts == 0] == 0).all()
    assert d.positive_fraction == pytest.approx(np.count_nonzero(valid & (t == 1)) / n, rel=1e-12)
    if dialect == "paper" and reduction == "mean":  # each occupied region: |lambda| mean g / M (spec.md 13)
        g, ind = eq.gradient_norm(x, t)[valid], eq.region_index(eq.gradient_norm(x, t)[valid], bins)
        for j in np.flatnonzero(d.counts):
            assert d.grad_mass[j] == pytest.approx(abs(loss_weight) * g[ind == j].mean() / bins, rel=1e-12)


def test_shares():
    np.testing.assert_array_equal(shares(np.array([1.0, 3.0, 0.0])), [0.25, 0.75, 0.0])
    np.testing.assert_array_equal(shares(np.zeros(3)), np.zeros(3))
