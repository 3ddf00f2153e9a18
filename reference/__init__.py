"""The GHM ground truth: a slow, readable NumPy transcription of the paper (see spec.md).

    from reference import ghm_c, ghm_r
    r = ghm_c(pred, target, label_weight=None, bins=30, momentum=0.0, dialect="paper")
    r.loss, r.grad, r.weights, r.state
    r.diagnostics.counts, r.diagnostics.beta, r.diagnostics.grad_share   # what the call did (spec.md 13)

Needs only NumPy. ``reference.equations`` holds one function per equation.
"""

from . import equations
from .diagnostics import Diagnostics
from .ghm import DIALECTS, REDUCTIONS, GHMResult, ghm_c, ghm_r, harmonize, region_weights

__all__ = [
    "DIALECTS",
    "REDUCTIONS",
    "Diagnostics",
    "GHMResult",
    "equations",
    "ghm_c",
    "ghm_r",
    "harmonize",
    "region_weights",
]
