"""How far a correct float32 port may be from the float64 reference (spec.md section 9).

Relative RTOL on losses and on each gradient entry, plus an absolute allowance of a few
float32 ulps of the magnitudes each term is computed from: a correct port cannot avoid that
rounding (the official literal ASL1 cancels for |d| << mu; ``sigmoid(x) - t`` cancels near
p = t), and a real error (a wrong region, weight or normalisation) is far larger.
"""

from __future__ import annotations

import math

import numpy as np

RTOL = 2e-4  # float32 port vs float64 reference: a few float32 ulps over a short sum
LOSS_FLOOR = 1e-5  # absolute floor of the relative loss error (losses of exactly 0)
FD_RTOL = 0.02  # central differences in float32 with steps kept inside a region
EPS32 = float(np.finfo(np.float32).eps)
ROUNDING_ULPS = 4  # the literal ASL1 errs by about eps32 * m / 4; a few ops more in a port


def rounding_scales(
    loss_kind: str, mu, pred: np.ndarray, target: np.ndarray, valid: np.ndarray, beta: np.ndarray
) -> tuple[float, np.ndarray]:
    """How much float32 rounding a correct port may show: for the loss,
    (1/N) sum_i beta_i m_i with m_i the magnitude L_i is rounded against; for each gradient
    entry, beta_i r_i / N with r_i the magnitude dL_i/dx_i is rounded against (p - t cancels
    near p = t; d = x - t loses |x| + |t| ulps, amplified by 1/sqrt(d^2 + mu^2))."""
    x, t = pred.astype(np.float64), target.astype(np.float64)
    n = max(int(valid.sum()), 1)
    with np.errstate(invalid="ignore", over="ignore"):
        if loss_kind == "c":
            m, r = np.abs(x) + np.abs(t) + 1.0, np.ones(x.shape)
        else:
            root = np.hypot(x - t, mu)
            m, r = np.abs(x) + np.abs(t) + root, 1.0 + (np.abs(x) + np.abs(t)) / root
        b = np.where(valid, np.nan_to_num(beta), 0.0)
        return float(np.sum(b * np.nan_to_num(m)) / n), b * np.nan_to_num(r) / n


def loss_error(got: float, want: float, scale: float = 0.0) -> float:
    """|got - want| relative to |want|, with the float32 rounding allowance; passes at <= RTOL.
    Matching NaNs agree (a NaN is expected of a poisoned batch); any other non-finite is inf."""
    if math.isnan(want) and math.isnan(got):
        return 0.0
    if not math.isfinite(got) or not math.isfinite(want):
        return 0.0 if got == want else math.inf
    return abs(got - want) / max(abs(want) + ROUNDING_ULPS * EPS32 * scale / RTOL, LOSS_FLOOR)


def grad_errors(got: np.ndarray, want: np.ndarray, rounding: np.ndarray | None = None) -> np.ndarray:
    """Per entry |got - want| relative to |want| (floor: 1e-3 of the largest), with the float32
    rounding allowance; an entry passes at <= RTOL."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return np.full(want.shape, math.inf)
    bad = ~np.isfinite(got) | ~np.isfinite(want)
    both_nan = np.isnan(got) & np.isnan(want)
    safe_want = np.where(np.isfinite(want), want, 0.0)
    scale = np.abs(safe_want) + 1e-3 * (np.max(np.abs(safe_want)) if want.size else 0.0) + 1e-9
    if rounding is not None:
        scale = scale + ROUNDING_ULPS * EPS32 * rounding / RTOL
    with np.errstate(invalid="ignore"):
        err = np.abs(np.where(bad, 0.0, got) - safe_want) / scale
    return np.where(both_nan, 0.0, np.where(bad, math.inf, err))


def grad_error(got: np.ndarray | None, want: np.ndarray, rounding: np.ndarray | None = None) -> float:
    if got is None or want.size == 0:
        return 0.0
    return float(np.max(grad_errors(got, want, rounding)))
