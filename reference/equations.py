"""One plain NumPy function per equation of the GHM paper.

Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181).
Names follow the paper's symbols; every docstring cites its equation. float64 throughout;
clarity beats speed (``gradient_density`` is O(N^2) on purpose).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """p = 1 / (1 + exp(-x)), evaluated without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def cross_entropy(x: np.ndarray, p_star: np.ndarray) -> np.ndarray:
    """Eq. (1): L_CE = -log p if p* = 1, -log(1 - p) if p* = 0, for logits x.

    Written as ``max(x, 0) - x p* + log(1 + exp(-|x|))``, which is Eq. (1) for p* in {0, 1},
    the binary cross entropy for soft labels p* in [0, 1], and never overflows.
    """
    x = np.asarray(x, dtype=np.float64)
    p_star = np.asarray(p_star, dtype=np.float64)
    return np.maximum(x, 0.0) - x * p_star + np.log1p(np.exp(-np.abs(x)))


def cross_entropy_grad(x: np.ndarray, p_star: np.ndarray) -> np.ndarray:
    """Eq. (2): dL_CE/dx = p - p*."""
    return sigmoid(x) - np.asarray(p_star, dtype=np.float64)


def cross_entropy_target_grad(x: np.ndarray, p_star: np.ndarray) -> np.ndarray:
    """dL_CE/dp* = -x: Eq. (1) (its soft-target form) differentiated with respect to the target
    (not in the paper; spec.md section 5, for targets that are themselves trained)."""
    return -np.broadcast_to(np.asarray(x, dtype=np.float64), np.shape(p_star)).copy()


def gradient_norm(x: np.ndarray, p_star: np.ndarray) -> np.ndarray:
    """Eq. (3): g = |p - p*|, in [0, 1]."""
    return np.abs(cross_entropy_grad(x, p_star))


def delta(x: np.ndarray, y: float, eps: float) -> np.ndarray:
    """Eq. (5): delta_eps(x, y) = 1 if y - eps/2 <= x < y + eps/2 else 0 (closed left)."""
    x = np.asarray(x, dtype=np.float64)
    return ((y - eps / 2 <= x) & (x < y + eps / 2)).astype(np.int64)


def l_eps(g: np.ndarray, eps: float) -> np.ndarray:
    """Eq. (6): l_eps(g) = min(g + eps/2, 1) - max(g - eps/2, 0).

    The length of the part of the window [g - eps/2, g + eps/2) inside [0, 1].
    """
    g = np.asarray(g, dtype=np.float64)
    return np.minimum(g + eps / 2, 1.0) - np.maximum(g - eps / 2, 0.0)


def gradient_density(g: np.ndarray, eps: float) -> np.ndarray:
    """Eq. (4): GD(g_i) = (1 / l_eps(g_i)) * sum_k delta_eps(g_k, g_i), for every i.

    The exact density, O(N^2): the sample is ``g`` itself (the valid examples).
    """
    g = np.asarray(g, dtype=np.float64).ravel()
    counts = np.array([delta(g, g_i, eps).sum() for g_i in g], dtype=np.float64)
    return counts / l_eps(g, eps)


def beta(gd: np.ndarray, n: int) -> np.ndarray:
    """Eqs. (7) and (10): beta_i = N / GD(g_i)."""
    return n / np.asarray(gd, dtype=np.float64)


def ghm_c_exact(x: np.ndarray, p_star: np.ndarray, eps: float) -> float:
    """Eq. (8): L_GHM-C = (1/N) sum_i beta_i L_CE(p_i, p*_i) with the exact density of Eq. (4)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    p_star = np.asarray(p_star, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return 0.0
    b = beta(gradient_density(gradient_norm(x, p_star), eps), n)
    return float(np.sum(b * cross_entropy(x, p_star)) / n)


def region_index(g: np.ndarray, bins: int) -> np.ndarray:
    """ind(g) of Sec. "Unit region": the t with t*eps <= g < (t+1)*eps, eps = 1/M (0-based).

    floor(g * M) is taken exactly, with rational arithmetic on the float64 value of g, so no
    rounding of g * M moves an entry across an edge. g = 1 (outside every half-open region)
    belongs to the last region, M - 1: the project's choice, shared by every known port.
    """
    g = np.asarray(g, dtype=np.float64)
    flat = [min(int(Fraction(float(v)) * bins), bins - 1) for v in g.ravel()]
    return np.array(flat, dtype=np.int64).reshape(g.shape)


def region_counts(ind: np.ndarray, bins: int) -> np.ndarray:
    """R_j: the number of examples in region r_j, as exact int64 counts."""
    return np.bincount(np.asarray(ind, dtype=np.int64).ravel(), minlength=bins).astype(np.int64)


def approx_gradient_density(s_ind: np.ndarray, bins: int) -> np.ndarray:
    """Eqs. (9) and (13): GD^(g) = R_ind(g) / eps = R_ind(g) * M (S_ind(g) * M with the EMA)."""
    return np.asarray(s_ind, dtype=np.float64) * bins


def ema(s_prev: np.ndarray, r: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. (12): S_j^(t) = alpha * S_j^(t-1) + (1 - alpha) * R_j^(t)."""
    return alpha * np.asarray(s_prev, dtype=np.float64) + (1.0 - alpha) * np.asarray(r, dtype=np.float64)


def asl1(d: np.ndarray, mu: float) -> np.ndarray:
    """Eq. (17): ASL1(d) = sqrt(d^2 + mu^2) - mu.

    Evaluated as d * u / (1 + mu / rho), rho = hypot(d, mu), u = d / rho: the same number
    without the cancellation of the literal form for |d| << mu, and without squaring d or mu,
    which overflows or underflows at extreme values (spec.md section 3).
    """
    d = np.asarray(d, dtype=np.float64)
    rho = np.hypot(d, mu)
    return d * (d / rho) / (1.0 + mu / rho)


def asl1_grad(d: np.ndarray, mu: float) -> np.ndarray:
    """Eq. (18): dASL1/dd = d / sqrt(d^2 + mu^2), the root taken as hypot(d, mu)."""
    d = np.asarray(d, dtype=np.float64)
    return d / np.hypot(d, mu)


def asl1_gradient_norm(d: np.ndarray, mu: float) -> np.ndarray:
    """Eq. (18): gr = |d| / sqrt(d^2 + mu^2), in [0, 1) (1.0 only by rounding)."""
    return np.abs(asl1_grad(d, mu))
