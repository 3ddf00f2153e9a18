"""Argument validation for the JAX losses (spec.md sections 6-7), on Python values and static
shapes only (under ``jax.jit`` shapes and dtypes are static; values are never read)."""

from __future__ import annotations

import jax.numpy as jnp

import ghm_args

FLOATING, BOOL, INTEGER = "floating", "bool", "integer"


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    ghm_args.check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)


def _kind(dtype) -> str:
    if dtype == jnp.bool_:
        return BOOL
    if jnp.issubdtype(dtype, jnp.floating):
        return FLOATING
    return INTEGER if jnp.issubdtype(dtype, jnp.integer) else str(dtype)


def as_array(name: str, x, *, allowed: tuple[str, ...]):
    x = jnp.asarray(x)
    if _kind(x.dtype) not in allowed:
        raise TypeError(f"{name} must have a {' or '.join(allowed)} dtype, got {x.dtype}")
    return x


def check_shape(name: str, x, *shapes) -> None:
    if tuple(x.shape) not in [tuple(s) for s in shapes]:
        raise ValueError(f"{name} must have shape {' or '.join(str(tuple(s)) for s in shapes)}, got {tuple(x.shape)}")


def compute_dtype(pred):
    """Statistics in float32 or better (float64 stays float64 where enabled; half types are upcast)."""
    return jnp.float64 if pred.dtype == jnp.float64 else jnp.float32


def valid_mask(label_weight, pred):
    """valid = label_weight > 0 (NaN and negative weights are masked), shaped like pred; per-anchor
    weights (pred.shape[:-1]) are broadcast. None when every entry is valid."""
    if label_weight is None:
        return None
    w = as_array("label_weight", label_weight, allowed=(FLOATING, BOOL, INTEGER))
    check_shape("label_weight", w, pred.shape, pred.shape[:-1])
    valid = w if w.dtype == jnp.bool_ else w > 0
    return valid if valid.ndim == pred.ndim else jnp.broadcast_to(valid[..., None], pred.shape)


def is_class_index_target(target, pred) -> bool:
    """spec.md section 6: shaped like pred, a target per entry (an integer one holds 0/1 labels);
    integer and shaped like pred.shape[:-1], class indices, which need C >= 2."""
    if tuple(target.shape) == tuple(pred.shape):
        return False
    if _kind(target.dtype) != INTEGER:
        raise ValueError(f"target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")
    if pred.ndim == 0 or tuple(target.shape) != tuple(pred.shape[:-1]):
        raise ValueError(f"an integer target must have the shape of pred {tuple(pred.shape)} (0/1 labels) or "
                         f"pred.shape[:-1] = {tuple(pred.shape[:-1])} (class indices), got {tuple(target.shape)}")
    if pred.shape[-1] == 1:
        raise ValueError(f"an integer target of shape {tuple(target.shape)} with a single logit per anchor (C = 1) "
                         f"is ambiguous: class indices (label 1 = background) or binary labels? Pass the labels "
                         f"shaped like pred {tuple(pred.shape)}, e.g. target[..., None], for binary labels")
    return True


def check_state(state, bins: int, momentum: float):
    """The EMA state: required shape, or a fresh one (``init_state``) when None."""
    from ._harmonize import init_state

    if momentum == 0.0:
        if state is not None:
            raise ValueError("state was given but momentum == 0: the EMA state only exists with momentum > 0")
        return None
    if state is None:
        return init_state(bins)
    if tuple(state.ema.shape) != (bins,):
        raise ValueError(f"state.ema must have shape ({bins},) (one value per region), got {tuple(state.ema.shape)}")
    return state
