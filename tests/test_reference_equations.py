"""The reference's equation functions, checked directly (spec.md sections 2-3)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reference import equations as eq
from reference import ghm_c, harmonize

unit = st.floats(0, 1)
eps_s = st.floats(1e-3, 1)


@given(unit, eps_s)
def test_l_eps_is_the_window_part_inside_unit_interval(g, eps):
    length = eq.l_eps(g, eps)
    assert 0 < length <= eps + 1e-15
    if eps / 2 <= g <= 1 - eps / 2:  # window fully inside
        assert length == pytest.approx(eps)
    assert length == pytest.approx(eq.l_eps(1 - g, eps))  # symmetric about 1/2
    # Measure the window by sampling: the fraction of points of [g - eps/2, g + eps/2) in [0, 1].
    pts = np.linspace(g - eps / 2, g + eps / 2, 20001)[:-1]
    assert length == pytest.approx(eps * np.mean((pts >= 0) & (pts <= 1)), abs=2e-4 * eps)


def test_l_eps_at_the_ends_is_half_a_window():
    assert eq.l_eps(0.0, 0.25) == 0.125
    assert eq.l_eps(1.0, 0.25) == 0.125


def test_delta_is_closed_left_open_right():
    y, eps = 0.5, 0.25  # dyadic: every bound exact
    assert eq.delta(np.array([0.375, 0.625, 0.5, 0.3]), y, eps).tolist() == [1, 0, 1, 0]


@given(st.integers(1, 40), st.lists(st.integers(0, 39), min_size=1, max_size=30))
def test_unit_region_density_equals_exact_density_at_region_centres(bins, js):
    js = [j % bins for j in js]
    g = (np.array(js) + 0.5) / bins
    exact = eq.gradient_density(g, 1.0 / bins)
    ind = eq.region_index(g, bins)
    approx = eq.approx_gradient_density(eq.region_counts(ind, bins)[ind], bins)
    np.testing.assert_allclose(exact, approx, rtol=1e-12)


@given(st.integers(1, 12), st.lists(st.tuples(st.integers(0, 11), st.booleans()), min_size=1, max_size=20))
def test_exact_ghm_c_equals_unit_region_loss_at_region_centres(bins, entries):
    g = np.array([(j % bins + 0.5) / bins for j, _ in entries])
    t = np.array([float(b) for _, b in entries])
    x = np.log(g / (1 - g)) * np.where(t == 1, -1, 1)  # p = g (t = 0) or 1 - g (t = 1)
    assert eq.ghm_c_exact(x, t, 1.0 / bins) == pytest.approx(ghm_c(x, t, bins=bins).loss, rel=1e-9)


def test_region_index_is_exact_and_puts_one_in_the_last_region():
    # double(0.3) is just below 3/10, so it lies in region 2 of 10, although 0.3 * 10 == 3.0 in floats.
    assert Fraction(0.3) < Fraction(3, 10) and 0.3 * 10 == 3.0
    assert eq.region_index(np.array([0.3]), 10).tolist() == [2]
    assert eq.region_index(np.array([0.0, 0.25, 0.5, 1.0]), 4).tolist() == [0, 1, 2, 3]
    assert eq.region_index(np.array([1.0]), 30).tolist() == [29]


@given(st.lists(unit, min_size=1, max_size=50), st.integers(1, 30))
def test_region_counts_count_each_region_by_its_definition(g, bins):
    g = np.array(g)
    r = eq.region_counts(eq.region_index(g, bins), bins)
    assert r.dtype == np.int64 and r.shape == (bins,)
    # R_j = #{i : j/M <= g_i < (j+1)/M}, the last region closed (g = 1), counted with exact rationals
    for j in range(bins):
        lo, hi = Fraction(j, bins), Fraction(j + 1, bins)
        members = [v for v in g if lo <= Fraction(float(v)) < hi or (j == bins - 1 and v == 1.0)]
        assert r[j] == len(members), f"region {j} of {bins}"


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 100)), min_size=1, max_size=10), st.floats(0.01, 0.99))
def test_ema_weights_the_old_state_by_alpha(pairs, alpha):
    # Eq. (12) with a state that differs from the new counts, so that swapping alpha and 1 - alpha
    # (or dropping a term) shows: one step moves S towards R by the fraction 1 - alpha.
    s = np.array([p[0] for p in pairs])
    r = np.array([p[1] for p in pairs], dtype=np.int64)
    new = eq.ema(s, r, alpha)
    np.testing.assert_allclose(new - s, (1 - alpha) * (r - s), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(eq.ema(np.zeros(3), np.array([4, 0, 8]), 0.75), [1.0, 0.0, 2.0])


@given(st.floats(-30, 30), st.sampled_from([0.0, 1.0]))
@example(x=18.796761065306583, t=0.0)  # the naive -log(1 - p) oracle cancels near p = 1
def test_cross_entropy_is_eq1_and_its_gradient_eq2(x, t):
    p = 1 / (1 + math.exp(-x))
    if 1e-6 < p < 1 - 1e-6:  # where the naive Eq. (1) is itself accurate to ~1e-10
        expected = -math.log(p) if t == 1 else -math.log1p(-p)
        assert eq.cross_entropy(x, t) == pytest.approx(expected, rel=1e-8)
    h = 1e-5
    fd = (eq.cross_entropy(x + h, t) - eq.cross_entropy(x - h, t)) / (2 * h)
    assert eq.cross_entropy_grad(x, t) == pytest.approx(fd, abs=1e-7)
    assert 0 <= eq.gradient_norm(x, t) <= 1


@given(st.floats(-5, 5), st.sampled_from([0.02, 0.1, 1.0]))
def test_asl1_gradient_is_eq18_and_norm_below_one(d, mu):
    h = 1e-6
    fd = (eq.asl1(d + h, mu) - eq.asl1(d - h, mu)) / (2 * h)
    assert eq.asl1_grad(d, mu) == pytest.approx(fd, abs=1e-6)
    assert 0 <= eq.asl1_gradient_norm(d, mu) < 1
    assert eq.asl1(d, mu) >= 0 and eq.asl1(0.0, mu) == 0


@given(st.integers(1, 10), st.integers(1, 4), st.sampled_from(["paper", "mmdet"]))
def test_uniform_histogram_gives_beta_one(bins, k, dialect):
    ind = np.repeat(np.arange(bins), k)
    beta, _ = harmonize(ind, bins=bins, momentum=0.0, state=None, dialect=dialect)
    np.testing.assert_allclose(beta, 1.0)


def test_beta_is_n_over_density():
    assert eq.beta(np.array([4.0, 2.0]), 4).tolist() == [1.0, 2.0]


@given(st.floats(-1e-3, 1e-3), st.sampled_from([0.02, 0.5]))
def test_asl1_has_no_cancellation_for_small_d(d, mu):
    # Taylor: ASL1(d) = d^2 / (2 mu) * (1 - d^2 / (4 mu^2) + ...), accurate to ~1e-6 here
    taylor = d * d / (2 * mu) * (1 - d * d / (4 * mu * mu))
    assert eq.asl1(d, mu) == pytest.approx(taylor, rel=1e-6, abs=1e-300)
