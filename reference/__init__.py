"""The GHM ground truth: a slow, readable NumPy transcription of the paper (see spec.md).

    from reference import ghm_c, ghm_r
    r = ghm_c(pred, target, label_weight=None, bins=30, momentum=0.0, dialect="paper")
    r.loss, r.grad, r.weights, r.state

Needs only NumPy. ``reference.equations`` holds one function per equation.
"""

from . import equations
from .ghm import DIALECTS, REDUCTIONS, GHMResult, ghm_c, ghm_r, harmonize

__all__ = ["DIALECTS", "REDUCTIONS", "GHMResult", "equations", "ghm_c", "ghm_r", "harmonize"]
