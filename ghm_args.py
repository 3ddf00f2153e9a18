"""Hyper-parameter validation shared by impl_torch and impl_tf (spec.md section 7).

Pure Python on Python values: no array library, no math of the loss (the implementations stay
independent of ``reference`` and of each other in everything they compute). The dialect and
reduction names are spelled here once for everything but the reference, which keeps its own
checks on purpose (it must not depend on the fast code).
"""

from __future__ import annotations

import numbers

DIALECTS = ("paper", "mmdet")
REDUCTIONS = ("mean", "sum", "none")
# float32 holds mu, mu^2-free hypot(d, mu) and mu / hypot(d, mu) for every finite float32 d only
# inside this range (spec.md section 7); the reference, in float64, accepts any mu > 0.
MU_RANGE = (1e-30, 1e30)

_INF = float("inf")


def _is_finite_real(value, symbolic: tuple[type, ...]) -> bool:
    if isinstance(value, symbolic):  # a torch.SymFloat under torch.compile(dynamic=True)
        return True
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    # no math.isfinite: it does not trace. The ignores here: typeshed's numbers.Real declares only
    # < and <=, while every concrete real (int, float, Fraction, NumPy scalars) compares both ways.
    return value == value and -_INF < value < _INF  # type: ignore[operator]


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight, symbolic: tuple[type, ...] = ()) -> None:
    """Raise ValueError naming the argument and its value. ``symbolic``: number types whose
    value is not known yet (they are accepted here; the loss is computed with them as given)."""
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum < 1.0:  # type: ignore[operator]
        raise ValueError(f"momentum must be a real number in [0, 1), got {momentum!r}")
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not _is_finite_real(loss_weight, symbolic):
        raise ValueError(f"loss_weight must be a finite real number, got {loss_weight!r}")


def check_mu(mu, symbolic: tuple[type, ...] = ()) -> None:
    if isinstance(mu, symbolic):
        return
    lo, hi = MU_RANGE
    if not _is_finite_real(mu, ()) or not mu > 0:
        raise ValueError(f"mu must be a finite real number > 0, got {mu!r}")
    if not lo <= mu <= hi:
        raise ValueError(f"mu must lie in [{lo:g}, {hi:g}] for the float32 losses, got {mu!r}")
