"""GHM-C and GHM-R for JAX, in the optax style: pure functions, keyword-only hyper-parameters,
the EMA state passed in and returned (a small pytree), compatible with ``jax.jit``, ``jax.grad``
and ``jax.vmap``, no host sync (see spec.md).

    from impl_jax import ghm_c_loss, init_state
    state = init_state(bins=30)
    loss, state = ghm_c_loss(logits, targets, label_weights, bins=30, momentum=0.75, state=state)
    loss, state, diagnostics = ghm_c_loss(..., diagnostics=True)   # what the call did (spec.md 13)

Never imports torch or TensorFlow.
"""

from ._diagnostics import Diagnostics
from ._harmonize import GHMState, init_state
from .ghm_c import ghm_c_loss
from .ghm_r import ghm_r_loss

__all__ = ["Diagnostics", "GHMState", "ghm_c_loss", "ghm_r_loss", "init_state"]
