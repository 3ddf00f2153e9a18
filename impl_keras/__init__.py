"""GHM-C and GHM-R as Keras 3 losses on every backend: TensorFlow, JAX and PyTorch (see spec.md).

    from impl_keras import GHMCLoss
    loss = GHMCLoss(bins=30, momentum=0.75)
    model.compile(optimizer="adam", loss=loss, metrics=[loss.state])   # metrics=: the JAX backend needs it
    carry_state(detector, cls_loss, box_loss)   # the same, for a model that refuses user metrics (keras-hub)
    GHMCLoss(..., diagnostics=True): metrics=[loss.diagnostics] logs what each call did (spec.md 13);
    DiagnosticsCallback(loss) records the per-region values per batch

The math is each backend's own kernel (``impl_tf``, ``impl_jax``, ``impl_torch``), each tested
against the reference; this package holds the Keras contract they share (sample weights and
Keras masks as masks, the EMA state in Keras variables, saving, distribution scaling). Importing
it imports only Keras; the backend's kernel is imported on the first call.
"""

from ._diagnostics import Diagnostics, DiagnosticsCallback, GHMDiagnostics
from ._loss import GHMState, carry_state
from .ghm import GHMCLoss, GHMRLoss

__all__ = ["Diagnostics", "DiagnosticsCallback", "GHMCLoss", "GHMDiagnostics", "GHMRLoss", "GHMState", "carry_state"]
