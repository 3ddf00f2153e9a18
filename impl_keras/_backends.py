"""Each Keras backend's GHM kernel, behind one signature:
``kernel(loss_obj, y_true, y_pred, sample_weight) -> (loss, new_ema, new_initialized, diagnostics)``
(diagnostics: spec.md 13, None unless the loss was built with ``diagnostics=True``).
TensorFlow uses ``impl_tf`` (with tf.distribute's scaling), JAX ``impl_jax``, PyTorch
``impl_torch``: the same kernels each framework's own losses use, imported on first use, so that
importing this package needs none of them."""

from __future__ import annotations

import keras

from ._keras_internals import get_keras_mask, get_stateless_scope, in_symbolic_scope


def _tensorflow(obj, y_true, y_pred, sample_weight):
    import tensorflow as tf

    from impl_tf import _checks, _diagnostics, _harmonize, ghm_c, ghm_r

    keras_mask = get_keras_mask(y_pred)
    pred = _checks.as_tensor("y_pred", y_pred, allowed=(_checks.FLOATING,))
    masks = [
        _checks.to_mask(name, m, pred)
        for name, m in (("sample_weight", sample_weight), ("keras mask", keras_mask))
        if m is not None
    ]
    valid = _checks.select(masks[1], masks[0], False) if len(masks) == 2 else (masks[0] if masks else None)
    prepared = (
        ghm_c._prepare(y_true, pred, valid, obj.bins)
        if obj.kind == "c"
        else ghm_r._prepare(y_true, pred, valid, obj.mu, obj.bins)
    )
    out = _harmonize.harmonized_loss(
        pred,
        *prepared,
        bins=obj.bins,
        momentum=obj.momentum,
        dialect=obj.dialect,
        reduction=obj.reduction,
        loss_weight=obj.loss_weight,
        state=obj.state.ema.value,
        initialized=obj.state.initialized.value,
        sync_density=obj.sync_density,
        diagnose=_diagnostics.collector(obj.kind, y_true, pred) if obj.diagnostics is not None else None,
    )
    loss, new_ema, new_initialized = out[:3]
    strategy = tf.distribute.get_strategy()
    if (
        obj.momentum > 0.0
        and strategy.num_replicas_in_sync > 1
        and not strategy.extended.variable_created_in_scope(obj.state.ema.value)
    ):
        raise ValueError(
            f"{type(obj).__name__} with momentum was created outside the scope of the "
            f"{type(strategy).__name__} it is called under: its EMA state cannot be kept "
            "consistent across replicas. Create the loss inside `strategy.scope()`."
        )
    if obj.reduction == "mean" and not obj.sync_density and strategy.num_replicas_in_sync > 1:
        # Keras sums the replicas' gradients: like every Keras loss, a mean divides by the replicas
        loss = loss * tf.constant(1.0 / strategy.num_replicas_in_sync, loss.dtype)
    return loss, new_ema, new_initialized, out[3] if len(out) > 3 else None


def _combined_mask(checks, pred, sample_weight, keras_mask):
    """The sample weight and the Keras mask, each as a mask shaped like pred, combined by "and"."""
    masks = [checks.valid_mask(m, pred) for m in (sample_weight, keras_mask) if m is not None]
    if len(masks) == 2:
        return masks[0] & masks[1]
    return masks[0] if masks else None


def _jax(obj, y_true, y_pred, sample_weight):
    from impl_jax import GHMState, _checks, ghm_c_loss, ghm_r_loss

    pred = _checks.as_array("y_pred", y_pred, allowed=(_checks.FLOATING,))
    valid = _combined_mask(_checks, pred, sample_weight, get_keras_mask(y_pred))
    state = GHMState(obj.state.ema.value, obj.state.initialized.value) if obj.momentum > 0.0 else None
    fn = ghm_c_loss if obj.kind == "c" else ghm_r_loss
    out = fn(pred, y_true, valid, state=state, diagnostics=obj.diagnostics is not None, **obj.hyper())
    loss, new = out[:2]
    return (
        loss,
        None if new is None else new.ema,
        None if new is None else new.initialized,
        out[2] if len(out) > 2 else None,
    )


def _torch(obj, y_true, y_pred, sample_weight):
    import torch

    from impl_torch import _checks, _diagnostics, _harmonize, ghm_c, ghm_r

    pred = y_pred if isinstance(y_pred, torch.Tensor) else torch.as_tensor(y_pred)
    target = y_true if isinstance(y_true, torch.Tensor) else torch.as_tensor(y_true, device=pred.device)
    sample_weight = None if sample_weight is None else torch.as_tensor(sample_weight, device=pred.device)
    valid = _combined_mask(_checks, pred, sample_weight, get_keras_mask(y_pred))
    state = {"state": obj.state.ema.value, "initialized": obj.state.initialized.value}
    hyper = dict(
        bins=obj.bins,
        momentum=obj.momentum,
        dialect=obj.dialect,
        reduction=obj.reduction,
        loss_weight=obj.loss_weight,
        target=target,
        **state,
        diagnose=_diagnostics.collector(obj.kind, pred, target) if obj.diagnostics is not None else None,
    )
    if obj.kind == "c":
        per_entry_loss, per_entry_grad, ind, ok, scratch, target_grad = ghm_c._prepare(pred, target, valid, obj.bins)
        out = _harmonize.harmonized_loss(
            pred, per_entry_loss, per_entry_grad, ind, ok, scratch=scratch, per_entry_target_grad=target_grad, **hyper
        )
    else:
        per_entry_loss, per_entry_grad, ind, ok, target_grad = ghm_r._prepare(pred, target, valid, obj.mu, obj.bins)
        out = _harmonize.harmonized_loss(
            pred, per_entry_loss, per_entry_grad, ind, ok, per_entry_target_grad=target_grad, **hyper
        )
    return (*out[:3], out[3] if len(out) > 3 else None)


KERNELS = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}


def check_state_is_carried(obj, new_ema) -> None:
    """On the JAX backend, an EMA update that would be lost is an error (spec.md 12), in the two ways
    it can be lost: Keras's ``fit`` / ``evaluate`` run in a stateless scope that carries only the
    model's variables and its metrics' (compiled, or tracked as attributes), dropping any other
    update; and a user's own ``jax.jit`` (or other transformation) outside any Keras scope would
    store a tracer in the variable (leaked, and the next step sees the old state)."""
    if keras.backend.backend() != "jax":
        return
    import jax

    scope = get_stateless_scope()
    if scope is None:
        if isinstance(new_ema, jax.core.Tracer):
            raise ValueError(
                f"{type(obj).__name__} with momentum on the JAX backend was called under a JAX transformation "
                f"(jax.jit, jax.grad, ...) outside Keras's training loop: its EMA update is a traced value that "
                f"cannot be stored in a Keras variable (it would leak, and every step would see the old state). "
                f"In a training loop of your own, carry the state through the step as Keras's JAX guide carries "
                f"metrics: `loss_value, state = loss.stateless_call(state, y_true, y_pred)` with "
                f"`state = [v.value for v in loss.state.variables]` passed in and returned by the jitted function, "
                f"then `for v, s in zip(loss.state.variables, state): v.assign(s)`; or train with model.fit "
                f"(compiled with metrics=[loss.state])"
            )
        return
    if in_symbolic_scope():  # Keras's shape inference: nothing is kept
        return
    if scope.get_current_value(obj.state.ema) is None:
        raise ValueError(
            f"{type(obj).__name__} with momentum on the JAX backend: Keras's compiled step carries only "
            f"the model's variables and its metrics', so the loss's EMA state would not move. Carry it "
            f"as a metric: model.compile(..., loss=loss, metrics=[loss.state]), or, for a model that "
            f"takes no metrics (keras-hub's detectors), impl_keras.carry_state(model, loss), which is "
            f"not saved with the model: call it again after keras.models.load_model"
        )
