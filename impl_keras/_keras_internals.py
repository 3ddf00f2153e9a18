"""The Keras internals impl_keras needs, and the only module that touches them.

Keras 3 has no public API for these three; each is checked against Keras's behaviour by
``tests/test_keras_internals.py``, so a Keras release that moves or changes one fails that test
loudly instead of a user's training run:

- ``get_keras_mask(x)``: the mask Keras attached to a tensor (``Masking``,
  ``Embedding(mask_zero=True)``), or None. Keras's own losses read it in ``Loss.__call__``,
  which the GHM losses override (for them a mask is a mask, not a weight).
- ``get_stateless_scope()``: the active ``keras.StatelessScope`` (the scope Keras's JAX train and
  test steps run in, carrying the variables they thread), or None.
- ``in_symbolic_scope()``: whether Keras is inferring shapes (``keras.SymbolicScope``), where
  nothing computed is kept.

Everything else impl_keras does goes through public APIs (``keras.StatelessScope``,
``keras.saving.serialize_keras_object``, attribute tracking of Keras variables and metrics).
"""

from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.stateless_scope import get_stateless_scope
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

__all__ = ["get_keras_mask", "get_stateless_scope", "in_symbolic_scope"]
