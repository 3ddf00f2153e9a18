"""Hyper-parameter validation shared by impl_torch and impl_tf (spec.md section 7).

Pure Python on Python values: no array library, no math of the loss (the implementations stay
independent of ``reference`` and of each other in everything they compute).
"""

from __future__ import annotations

import math
import numbers

DIALECTS = ("paper", "mmdet")
REDUCTIONS = ("mean", "sum", "none")


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    """Raise ValueError naming the argument and its value."""
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be a real number in [0, 1), got {momentum!r}")
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, numbers.Real) or not math.isfinite(loss_weight):
        raise ValueError(f"loss_weight must be a finite real number, got {loss_weight!r}")


def check_mu(mu) -> None:
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not (math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu must be a finite real number > 0, got {mu!r}")
