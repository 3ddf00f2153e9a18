"""GHM diagnostics over training, whatever framework computed them (spec.md section 13).

    from ghm_diagnostics import Recorder
    rec = Recorder()
    for step, batch in enumerate(loader):
        ...
        rec.append(loss_fn.last_diagnostics(), step=step)   # torch / Keras; JAX: the returned pytree
    rec.save("diag.npz")
    rec.plot("diag.png")                                     # needs matplotlib (the [plot] extra)

Needs only NumPy (matplotlib for ``plot``); imports no deep-learning framework.
"""

from ._plot import plot
from ._recorder import FIELDS, Recorder, as_numpy, shares

__all__ = ["FIELDS", "Recorder", "as_numpy", "plot", "shares"]
