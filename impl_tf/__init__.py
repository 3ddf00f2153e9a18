"""GHM-C and GHM-R for TensorFlow 2 / Keras 3: eager, tf.function and XLA (see spec.md).

    from impl_tf import GHMCLoss
    model.compile(optimizer="adam", loss=GHMCLoss(bins=30, momentum=0.75))

``GHMCLoss`` / ``GHMRLoss`` are the Keras losses of ``impl_keras`` (the same classes, which run
this package's kernels on the TensorFlow backend and work on JAX and PyTorch too);
``ghm_c_loss`` / ``ghm_r_loss`` are the stateless TensorFlow functions (``diagnostics=True``: also
what the call did, spec.md 13). Never imports torch or JAX.
"""

from impl_keras import GHMCLoss, GHMRLoss

from ._diagnostics import Diagnostics
from .ghm_c import ghm_c_loss
from .ghm_r import ghm_r_loss

__all__ = ["Diagnostics", "GHMCLoss", "GHMRLoss", "ghm_c_loss", "ghm_r_loss"]
