"""GHM-C and GHM-R for TensorFlow 2 / Keras 3: eager, tf.function and XLA (see spec.md).

    from impl_tf import GHMCLoss
    model.compile(optimizer="adam", loss=GHMCLoss(bins=30, momentum=0.75))

Never imports torch.
"""

from .ghm_c import GHMCLoss, ghm_c_loss
from .ghm_r import GHMRLoss, ghm_r_loss

__all__ = ["GHMCLoss", "GHMRLoss", "ghm_c_loss", "ghm_r_loss"]
