"""What GHMCLoss and GHMRLoss share on every Keras backend: hyper-parameters, the EMA state in
Keras variables (``GHMState``), the Keras loss contract (sample weights and Keras masks as
masks, saving), and the dispatch to the backend's own kernel (``_backends.py``)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

import ghm_args

from . import _backends, _diagnostics


@keras.saving.register_keras_serializable(package="ghm")
class GHMState(keras.metrics.Metric):
    """The EMA region state of a GHM loss (S of Eq. 12, or the mmdet accumulator): ``ema``
    (float32, one value per region) and ``initialized`` (bool), Keras variables created with
    ``aggregation="only_first_replica"`` (every replica keeps the first one's value).

    A Keras metric so that Keras carries it through a compiled train step: on the JAX backend
    Keras threads only the model's and the compiled metrics' variables through ``fit``, so pass
    it as ``model.compile(..., metrics=[loss.state])``. It is updated by the loss, not by Keras
    (``update_state`` does nothing) and an EMA outlives epochs (``reset_state`` does nothing).

    Its result, shown in Keras's logs and progress bar as ``<loss>_ema_count`` (e.g.
    ``ghm_c_ema_count: 83.39``), is not a loss: it is the sum of the EMA, the smoothed number of
    valid entries per call (exactly that in the "paper" dialect; the accumulator's total, which
    approaches it, in "mmdet"). A value far from the batch's number of valid entries says the
    state was carried from another task, or has not warmed up."""

    def __init__(self, bins: int = 30, name: str = "ghm_ema_count", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.bins = int(bins)
        # attribute assignment tracks them as the metric's variables (Keras's public tracking)
        self.ema = self._state_variable((self.bins,), "float32", "ema")
        self.initialized = self._state_variable((), "bool", "initialized")

    def _state_variable(self, shape, dtype: str, name: str):
        """Written by the first replica and mirrored to the others ("on_write"): a metric's own
        variables (``add_variable``) are per replica ("on_read"), which would let the replicas' EMA
        states drift apart."""
        with keras.name_scope(self.name.replace("/", ">"), caller=self):
            return keras.Variable(
                initializer="zeros",
                shape=shape,
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                synchronization="on_write",
                name=name,
            )

    def update_state(self, *args, **kwargs) -> None:
        return None

    def reset_state(self) -> None:
        return None

    def result(self):
        return ops.sum(self.ema)

    def get_config(self) -> dict:
        return {"bins": self.bins, "name": self.name}


def carry_state(model: keras.Model, *losses) -> None:
    """Track the losses' EMA states as metrics of ``model``, so that Keras carries them through its
    compiled train and test steps on every backend: what ``metrics=[loss.state]`` in ``compile``
    does, for a model that takes no user metrics (keras-hub's detectors refuse them). Needed on
    the JAX backend for a loss with momentum; harmless elsewhere. Call it after ``compile``; the
    state's result (``<loss>_ema_count``, the EMA's total, not a loss) then shows in the logs. A loss
    built with ``diagnostics=True`` has its diagnostics (``loss.diagnostics``, spec.md 13) carried too.

    Not saved with the model: after ``keras.models.load_model`` (and the ``compile`` a keras-hub
    detector needs then) call it again; until then a JAX ``fit`` raises the error that says so.
    A model compiled with ``metrics=[loss.state]`` needs nothing on reload."""
    for loss in losses:
        if not isinstance(loss, GHMLossBase):
            raise TypeError(f"carry_state takes the GHM losses compiled into the model, got {type(loss).__name__}")
        for metric in (loss.state, loss.diagnostics):
            if metric is None or any(m is metric for m in model.metrics):
                continue
            carried = sum(name.startswith("_ghm_carried_state_") for name in vars(model))
            try:  # a metric assigned to a model attribute is tracked as the model's metric (public tracking)
                setattr(model, f"_ghm_carried_state_{carried}", metric)
            except ValueError:  # Keras refuses new state on a model it has locked
                raise ValueError(
                    f"{type(model).__name__} accepts no new state: compile with "
                    f"metrics=[loss.state, loss.diagnostics] instead"
                ) from None


class GHMLossBase(keras.losses.Loss):
    kind = "c"  # "c" (GHM-C) or "r" (GHM-R)

    def __init__(
        self,
        *,
        bins: int,
        momentum: float,
        dialect: str,
        reduction: str,
        loss_weight: float,
        name: str | None,
        sync_density: bool = False,
        diagnostics: bool = False,
    ) -> None:
        ghm_args.check_hyper(
            bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight
        )
        if sync_density and keras.backend.backend() != "tensorflow":
            raise ValueError(
                f"sync_density=True needs tf.distribute (the TensorFlow backend); on the "
                f"{keras.backend.backend()} backend it is not available: under keras.distribution (JAX) "
                f"the loss already sees the global batch; with torch DDP use impl_torch's losses"
            )
        super().__init__(name=name, reduction=reduction)
        self.bins, self.momentum, self.dialect = int(bins), float(momentum), dialect
        self.loss_weight = float(loss_weight)
        self.sync_density = bool(sync_density)
        # "ghm_c_loss" -> "ghm_c_ema_count": what Keras's logs show is the EMA's total, not a loss
        base = (name or "ghm").removesuffix("_loss") or "ghm"
        self.state = GHMState(self.bins, name=f"{base}_ema_count")
        # What each call did (spec.md 13), when asked for: a metric whose variables the call assigns
        self.diagnostics = (
            _diagnostics.GHMDiagnostics(
                self.bins, classification=self.kind == "c", prefix=base, name=f"{base}_diagnostics"
            )
            if diagnostics
            else None
        )

    @property
    def ema(self):
        """The EMA state's region values (``state.ema``), a float32 Keras variable."""
        return self.state.ema

    @property
    def ema_initialized(self):
        """Whether a call with a valid entry has set the EMA state (``state.initialized``)."""
        return self.state.initialized

    def last_diagnostics(self) -> _diagnostics.Diagnostics:
        """What the last call did (spec.md 13): counts, N, non-empty regions, density, beta and
        gradient masses per region, positive fraction (``.grad_share`` / ``.plain_share`` derived),
        as tensor copies. Needs ``diagnostics=True``; zeros before the first call."""
        if self.diagnostics is None:
            raise RuntimeError(
                f"{type(self).__name__} was built without diagnostics: construct it with "
                f"diagnostics=True to record what each call did"
            )
        return self.diagnostics.values()

    def hyper(self) -> dict:
        """The kernel's keyword arguments (GHMRLoss adds mu)."""
        return {
            "bins": self.bins,
            "momentum": self.momentum,
            "dialect": self.dialect,
            "reduction": self.reduction,
            "loss_weight": self.loss_weight,
        }

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras order: ``y_true`` first. ``sample_weight`` is the label weight (a mask); a Keras
        mask on ``y_pred`` masks too. Under tf.distribute a "mean" is divided by the number of
        replicas, as Keras losses are."""
        kernel = _backends.KERNELS[keras.backend.backend()]
        with keras.name_scope(self.name):
            loss, new_ema, new_initialized, diagnostics = kernel(self, y_true, y_pred, sample_weight)
            if self.momentum > 0.0:
                _backends.check_state_is_carried(self, new_ema)
                self.state.ema.assign(new_ema)
                self.state.initialized.assign(new_initialized)
            if self.diagnostics is not None:
                _diagnostics.check_carried(self, diagnostics)
                self.diagnostics.record(diagnostics)
            return loss

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def stateless_call(self, state_variables, y_true, y_pred, sample_weight=None):
        """The loss with its EMA state passed in and returned, for a training loop of your own (the
        pattern of Keras's JAX guide, ``model.stateless_call`` / ``metric.stateless_update_state``):
        returns ``(loss, new_state_variables)`` and changes no variable.

        ``state_variables``: the values of ``loss.state.variables`` (``[ema, initialized]``), e.g.
        ``[v.value for v in loss.state.variables]`` before the loop; assign the last ones back
        after it (``v.assign(value)``) to keep the EMA in the loss. Every backend; on JAX it is the
        way to keep an EMA inside a ``jax.jit`` of your own (a plain call there raises)."""
        variables = self.state.variables
        if len(state_variables) != len(variables):
            raise ValueError(
                f"state_variables must hold the {len(variables)} values of loss.state.variables "
                f"([ema, initialized]), got {len(state_variables)}"
            )
        with keras.StatelessScope(state_mapping=list(zip(variables, state_variables, strict=True))) as scope:
            loss = self(y_true, y_pred, sample_weight)
        return loss, [scope.get_current_value(v) for v in variables]

    def get_config(self) -> dict:
        """JSON-serializable: the state is given as its Keras config (its bins and name), not its
        values. A loss built from it (``from_config(get_config())``, ``keras.losses.deserialize``,
        a clone) has the same configuration and a fresh EMA state of its own (zeros, not
        initialized): the state is copied by configuration, never shared, and its values travel
        only in a saved ``.keras`` file (``save_own_variables``)."""
        # The state serialized twice: inside Keras's saving (an object-sharing scope) the second
        # serialization carries a shared_object_id (Keras copies the first one's config), so that
        # a reloaded model's loss and its compiled metric (metrics=[loss.state]) are one object.
        keras.saving.serialize_keras_object(self.state)
        state = keras.saving.serialize_keras_object(self.state)
        diagnostics: dict | bool = False
        if self.diagnostics is not None:  # likewise, shared with a compiled metrics=[loss.diagnostics]
            keras.saving.serialize_keras_object(self.diagnostics)
            diagnostics = keras.saving.serialize_keras_object(self.diagnostics)
        return {
            "name": self.name,
            "bins": self.bins,
            "momentum": self.momentum,
            "dialect": self.dialect,
            "reduction": self.reduction,
            "loss_weight": self.loss_weight,
            "sync_density": self.sync_density,
            "state": state,
            "diagnostics": diagnostics,
        }

    @classmethod
    def from_config(cls, config: dict):
        """The state's config is deserialized: in a saved model Keras then hands the loss and the
        compiled metric one object; anywhere else the new loss starts a state of its own."""
        config = dict(config)
        state = config.pop("state", None)
        diagnostics = config.pop("diagnostics", False)
        loss = cls(**config, diagnostics=bool(diagnostics))
        if isinstance(state, dict):
            loss.state = keras.saving.deserialize_keras_object(state)
        if isinstance(diagnostics, dict):  # shared with the compiled metric, as the state is
            loss.diagnostics = keras.saving.deserialize_keras_object(diagnostics)
        return loss

    # The EMA state travels with a saved .keras model (Keras calls these on saveable objects).
    def save_own_variables(self, store) -> None:
        store["ema"] = ops.convert_to_numpy(self.state.ema)
        store["ema_initialized"] = np.asarray(ops.convert_to_numpy(self.state.initialized))

    def load_own_variables(self, store) -> None:
        """Restore the EMA state, or say why it cannot be: Keras retries a failed object with other
        (empty) stores and reports the last error, so the first reason is kept and raised again."""
        try:
            ema, initialized = np.asarray(store["ema"]), np.asarray(store["ema_initialized"])
        except KeyError:
            raise ValueError(
                getattr(self, "_load_failure", None)
                or f"{type(self).__name__}: the file holds no EMA state for this loss (saved with "
                f"another loss?); compile the model with the loss it was saved with"
            ) from None
        if ema.shape != (self.bins,):
            self._load_failure = (
                f"{type(self).__name__}(bins={self.bins}) cannot take an EMA state of {ema.size} regions (saved by a "
                f"loss with bins={ema.size}): the regions do not correspond. Build the loss with bins={ema.size} to "
                f"continue that EMA, or load with skip_mismatch=True to start this one afresh"
            )
            raise ValueError(self._load_failure)
        self.state.ema.assign(ema.astype(np.float32))
        self.state.initialized.assign(bool(initialized))
