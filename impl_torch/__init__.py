"""Fast, sync-free, compilable PyTorch GHM-C and GHM-R (see spec.md).

from impl_torch import GHMCLoss
crit = GHMCLoss(bins=30, momentum=0.75)
loss = crit(logits, targets, label_weights)
GHMCLoss(..., diagnostics=True).last_diagnostics()   # what the last call did (spec.md 13)
"""

from ._diagnostics import Diagnostics
from .ghm_c import GHMCLoss, ghm_c_loss
from .ghm_r import GHMRLoss, ghm_r_loss

__all__ = ["Diagnostics", "GHMCLoss", "GHMRLoss", "ghm_c_loss", "ghm_r_loss"]
