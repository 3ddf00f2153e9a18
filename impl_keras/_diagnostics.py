"""What each call of a Keras GHM loss did (spec.md section 13), in Keras variables that show in
``fit``'s logs, and a callback that records the per-region values after every batch.

    loss = GHMCLoss(bins=30, momentum=0.75, diagnostics=True)
    model.compile(loss=loss, metrics=[loss.state, loss.diagnostics])   # logs: ghm_c_nonempty, ...
    recorder = DiagnosticsCallback(loss)
    model.fit(x, y, callbacks=[recorder]); recorder.records["ghm_c_loss"].plot()

The values are computed by the backend's kernel (impl_tf / impl_jax / impl_torch) with the loss
and assigned to the variables of ``GHMDiagnostics``, a Keras metric, by the loss's call, as the
EMA state is: on the JAX backend Keras's compiled step must carry it (``metrics=[...]`` or
``carry_state``), or the call raises.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

FIELDS = ("counts", "valid", "nonempty", "density", "beta", "grad_mass", "plain_mass", "positive_fraction")
_INTEGER = ("counts", "valid", "nonempty")
_PER_REGION = ("counts", "density", "beta", "grad_mass", "plain_mass")


def shares(mass):
    """mass_j / sum_k mass_k (0 everywhere when the sum is 0; NaN for a poisoned call)."""
    total = ops.sum(mass, axis=-1, keepdims=True)
    nonzero = ops.not_equal(total, 0)
    return ops.where(nonzero, mass / ops.where(nonzero, total, ops.ones_like(total)), ops.zeros_like(mass))


class Diagnostics(NamedTuple):
    """What one call did (spec.md 13), as backend tensors: counts, valid, nonempty (integers),
    density, beta, grad_mass, plain_mass (per region), positive_fraction (GHM-C; NaN for GHM-R);
    ``grad_share`` / ``plain_share`` derived. See ``impl_torch.Diagnostics`` for each field."""

    counts: object
    valid: object
    nonempty: object
    density: object
    beta: object
    grad_mass: object
    plain_mass: object
    positive_fraction: object

    @property
    def grad_share(self):
        return shares(ops.cast(self.grad_mass, "float32"))

    @property
    def plain_share(self):
        return shares(ops.cast(self.plain_mass, "float32"))


def _count_dtype() -> str:
    """The kernels' count dtype: int64, but int32 under JAX's default 32-bit mode (its counts)."""
    if keras.backend.backend() == "jax":
        import jax

        # Config sets the flag's attribute at runtime (no stub); config.read() refuses it in JAX 0.4.x
        return "int64" if jax.config.jax_enable_x64 else "int32"  # type: ignore[attr-defined]
    return "int64"


@keras.saving.register_keras_serializable(package="ghm")
class GHMDiagnostics(keras.metrics.Metric):
    """The last call's diagnostics of a GHM loss (spec.md 13), in Keras variables the loss assigns
    (``update_state`` / ``reset_state`` do nothing). Its result gives ``fit``'s logs the scalars
    ``<prefix>_nonempty`` (occupied regions), ``<prefix>_valid`` (N), ``<prefix>_max_grad_share``
    (the largest region's share of the harmonized gradient), ``<prefix>_grad_share_0`` and
    ``<prefix>_plain_share_0`` (the first region's share, harmonized and plain: where the easy
    examples are) and, for GHM-C, ``<prefix>_positive_fraction``. ``prefix`` is the loss's name
    without a trailing "_loss". Variables are written by the first replica and mirrored."""

    def __init__(
        self, bins: int = 30, classification: bool = True, prefix: str = "ghm", name: str = "ghm_diagnostics", **kwargs
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.bins, self.classification, self.prefix = int(bins), bool(classification), prefix
        for field in FIELDS:
            shape = (self.bins,) if field in _PER_REGION else ()
            dtype = _count_dtype() if field in _INTEGER else "float32"
            setattr(self, field, self._variable(shape, dtype, field))

    def _variable(self, shape, dtype: str, name: str):
        with keras.name_scope(self.name.replace("/", ">"), caller=self):
            variable = keras.Variable(
                initializer="zeros",
                shape=shape,
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                synchronization="on_write",
                name=name,
            )
        return variable  # tracked as the metric's variable by the caller's attribute assignment

    def record(self, diagnostics) -> None:
        """Assign one call's values (the kernel's Diagnostics, any backend's)."""
        for field, value in zip(FIELDS, diagnostics):
            variable = getattr(self, field)
            variable.assign(ops.cast(value, variable.dtype))

    def update_state(self, *args, **kwargs) -> None:
        return None

    def reset_state(self) -> None:
        return None

    def values(self) -> Diagnostics:
        """The last call's values, as tensor copies."""
        return Diagnostics(*(ops.copy(ops.convert_to_tensor(getattr(self, field))) for field in FIELDS))

    def result(self):
        grad_share = shares(ops.convert_to_tensor(self.grad_mass))
        plain_share = shares(ops.convert_to_tensor(self.plain_mass))
        p = self.prefix
        out = {
            f"{p}_nonempty": ops.cast(self.nonempty, "float32"),
            f"{p}_valid": ops.cast(self.valid, "float32"),
            f"{p}_max_grad_share": ops.max(grad_share),
            f"{p}_grad_share_0": grad_share[0],
            f"{p}_plain_share_0": plain_share[0],
        }
        if self.classification:
            out[f"{p}_positive_fraction"] = ops.convert_to_tensor(self.positive_fraction)
        return out

    def get_config(self) -> dict:
        return {"bins": self.bins, "classification": self.classification, "prefix": self.prefix, "name": self.name}


def check_carried(loss, diagnostics) -> None:
    """On the JAX backend Keras's compiled steps carry only the model's and its metrics' variables:
    diagnostics assigned outside them would be dropped silently. Say how to carry them instead."""
    if keras.backend.backend() != "jax":
        return
    import jax

    from ._keras_internals import get_stateless_scope, in_symbolic_scope

    scope = get_stateless_scope()
    if scope is None:
        if isinstance(diagnostics[0], jax.core.Tracer):
            raise ValueError(
                f"{type(loss).__name__}(diagnostics=True) on the JAX backend was called under a JAX "
                f"transformation (jax.jit, ...) outside Keras's training loop: the diagnostics are traced "
                f"values that cannot be stored in Keras variables (they would leak). In a loop of your "
                f"own, build the loss without diagnostics, or call it eagerly"
            )
        return
    if in_symbolic_scope():
        return
    if scope.get_current_value(loss.diagnostics.counts) is None:
        raise ValueError(
            f"{type(loss).__name__}(diagnostics=True) on the JAX backend: Keras's compiled step carries "
            f"only the model's variables and its metrics', so the diagnostics would not be recorded. "
            f"Carry them as a metric: model.compile(..., metrics=[loss.diagnostics]) (with loss.state "
            f"for a loss with momentum), or impl_keras.carry_state(model, loss)"
        )


class DiagnosticsCallback(keras.callbacks.Callback):
    """Records every loss's per-region diagnostics after each training batch (and, with
    ``validation=True``, each test batch): ``records[loss.name]`` is a ``ghm_diagnostics.Recorder``
    (NumPy per step; ``.save``, ``.plot``). Reading the values is a host transfer per batch (on
    JAX also a sync of the model's state), which the loss itself never does.

    Args:
        *losses: Keras GHM losses built with ``diagnostics=True``.
        validation: also record the calls of ``evaluate`` / validation, under
            ``records["val_" + loss.name]``. Default: False.
    """

    def __init__(self, *losses, validation: bool = False) -> None:
        super().__init__()
        from ghm_diagnostics import Recorder

        for loss in losses:
            if getattr(loss, "diagnostics", None) is None:
                raise ValueError(f"DiagnosticsCallback needs losses built with diagnostics=True, got {loss!r}")
        self.losses, self.validation = losses, bool(validation)
        self.records = {loss.name: Recorder() for loss in losses}
        if self.validation:
            self.records.update({f"val_{loss.name}": Recorder() for loss in losses})
        self._step = 0

    def _record(self, prefix: str, step: int) -> None:
        _ = self.model  # on JAX, brings the state of the compiled step back into the variables
        for loss in self.losses:
            self.records[prefix + loss.name].append(loss.last_diagnostics(), step=step)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._record("", self._step)
        self._step += 1

    def on_test_batch_end(self, batch, logs=None) -> None:
        if self.validation:
            self._record("val_", self._step)
