"""GHM-C and GHM-R for TensorFlow 2 / Keras 3: eager, tf.function and XLA (see spec.md).

    from impl_tf import GHMCLoss
    model.compile(optimizer="adam", loss=GHMCLoss(bins=30, momentum=0.75))

``GHMCLoss`` / ``GHMRLoss`` are the Keras losses of ``impl_keras`` (the same classes, which run
this package's kernels on the TensorFlow backend and work on JAX and PyTorch too);
``ghm_c_loss`` / ``ghm_r_loss`` are the stateless TensorFlow functions (``diagnostics=True``: also
what the call did, spec.md 13). Never imports torch or JAX.

Layout: ``impl_keras`` uses this package's kernels, so this package does not import
``impl_keras`` when it is imported (that would be an import cycle): ``GHMCLoss`` / ``GHMRLoss``
are re-exported lazily, resolved from ``impl_keras`` on first access (PEP 562 ``__getattr__``).
``from impl_tf import GHMCLoss`` works as before; ``import impl_tf`` alone does not import
``impl_keras``.
"""

from ._diagnostics import Diagnostics
from .ghm_c import ghm_c_loss
from .ghm_r import ghm_r_loss

__all__ = ["Diagnostics", "GHMCLoss", "GHMRLoss", "ghm_c_loss", "ghm_r_loss"]

_FROM_IMPL_KERAS = ("GHMCLoss", "GHMRLoss")


def __getattr__(name: str):
    if name in _FROM_IMPL_KERAS:
        import impl_keras

        return getattr(impl_keras, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_IMPL_KERAS))
