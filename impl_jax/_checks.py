"""Argument validation for the JAX losses (spec.md sections 6-7), on Python values and static
shapes only (under ``jax.jit`` shapes and dtypes are static; values are never read)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import ghm_args

from ._harmonize import init_state, x64_enabled

FLOATING, BOOL, INTEGER = "floating", "bool", "integer"


STATIC_HINT = (
    "hyper-parameters are static Python numbers and strings (one compilation per setting): pass "
    "float(x) / int(x) for a concrete array; under jax.jit mark them static, "
    "jax.jit(ghm_c_loss, static_argnames=('bins', 'momentum', 'dialect', 'reduction', 'loss_weight')), "
    "or bind them first, jax.jit(functools.partial(ghm_c_loss, bins=30, momentum=0.75))"
)


def check_static(**hyper) -> None:
    """A JAX array (a tracer under jax.jit, or a concrete jnp scalar) given as a hyper-parameter:
    a ValueError that says they are static and how to pass them, rather than "momentum must be
    a real number in [0, 1), got JitTracer"."""
    for name, value in hyper.items():
        if isinstance(value, jax.Array):
            kind = "a traced value" if isinstance(value, jax.core.Tracer) else f"a JAX array {value!r}"
            raise ValueError(f"{name} must be a Python number, got {kind}: {STATIC_HINT}")


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    check_static(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
    ghm_args.check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)


def _kind(dtype) -> str:
    if dtype == jnp.bool_:
        return BOOL
    if jnp.issubdtype(dtype, jnp.floating):
        return FLOATING
    return INTEGER if jnp.issubdtype(dtype, jnp.integer) else str(dtype)


def _narrowed_by_jax(x) -> bool:
    """A host (NumPy) array that JAX's default 32-bit mode would narrow on entry: int64/uint64
    wrap modulo 2^32, float64 rounds (1e-50 becomes 0)."""
    return (
        not x64_enabled()
        and isinstance(x, (np.ndarray, np.generic))
        and x.dtype.kind in "iuf"
        and x.dtype.itemsize == 8
    )


def host_labels(target):
    """64-bit integer host labels in 32-bit mode as int32, a value int32 cannot hold as -1 (out of
    range for both readings of an integer target, so a valid one poisons the loss, as the reference
    rejects it, spec.md 7) instead of JAX's wrap (2^32 + 1 would be read as class 1). Anything
    else is returned as it is."""
    if not (_narrowed_by_jax(target) and target.dtype.kind in "iu"):
        return target
    labels, info = np.asarray(target), np.iinfo(np.int32)
    fits = labels <= info.max if labels.dtype.kind == "u" else (labels >= info.min) & (labels <= info.max)
    return np.where(fits, labels, -1).astype(np.int32)


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


def positive(w, xp=jnp):
    """w > 0 exactly, subnormal weights included (spec.md 1): a float is compared by its bits, as
    the integer view of its sign and magnitude (0 < bits <= bits(+inf): positive, not NaN), because
    XLA on CPU and TensorFlow flush subnormals to zero in a float comparison (1e-40 > 0 was False).
    ``xp``: jnp, or np for host arrays."""
    if w.dtype == xp.bool_:
        return w
    if not xp.issubdtype(w.dtype, xp.floating):
        return w > 0
    as_int = xp.dtype(f"int{8 * xp.dtype(w.dtype).itemsize}")
    bits = w.view(as_int) if xp is np else jax.lax.bitcast_convert_type(w, as_int)
    inf = np.array(np.inf, w.dtype).view(as_int)
    return (bits > 0) & (bits <= inf)


def valid_mask(label_weight, pred):
    """valid = label_weight > 0 (NaN and negative weights are masked; a subnormal positive weight is
    valid), shaped like pred; per-anchor weights (pred.shape[:-1]) are broadcast. None when every
    entry is valid."""
    if label_weight is None:
        return None
    if _narrowed_by_jax(label_weight):  # decided on the host, before 32-bit JAX wraps or rounds it to 0
        label_weight = positive(np.asarray(label_weight), np)
    w = as_array("label_weight", label_weight, allowed=(FLOATING, BOOL, INTEGER))
    check_shape("label_weight", w, pred.shape, pred.shape[:-1])
    valid = positive(w)
    return valid if valid.ndim == pred.ndim else jnp.broadcast_to(valid[..., None], pred.shape)


def is_class_index_target(target, pred) -> bool:
    """spec.md section 6: shaped like pred, a target per entry (an integer one holds 0/1 labels);
    integer and shaped like pred.shape[:-1], class indices, which need C >= 2."""
    if tuple(target.shape) == tuple(pred.shape):
        return False
    if _kind(target.dtype) != INTEGER:
        raise ValueError(f"target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")
    if pred.ndim == 0 or tuple(target.shape) != tuple(pred.shape[:-1]):
        raise ValueError(
            f"an integer target must have the shape of pred {tuple(pred.shape)} (0/1 labels) or "
            f"pred.shape[:-1] = {tuple(pred.shape[:-1])} (class indices), got {tuple(target.shape)}"
        )
    if pred.shape[-1] == 1:
        raise ValueError(
            f"an integer target of shape {tuple(target.shape)} with a single logit per anchor (C = 1) "
            f"is ambiguous: class indices (label 1 = background) or binary labels? Pass the labels "
            f"shaped like pred {tuple(pred.shape)}, e.g. target[..., None], for binary labels"
        )
    return True


def check_state(state, bins: int, momentum: float):
    """The EMA state: required shape, or a fresh one (``init_state``) when None."""
    if momentum == 0.0:
        if state is not None:
            raise ValueError("state was given but momentum == 0: the EMA state only exists with momentum > 0")
        return None
    if state is None:
        return init_state(bins)
    ema, initialized = jnp.asarray(state.ema), jnp.asarray(state.initialized)
    if tuple(ema.shape) != (bins,):
        raise ValueError(f"state.ema must have shape ({bins},) (one value per region), got {tuple(ema.shape)}")
    # an integer EMA would be truncated every call, a half one rounded: float32 (init_state's), or float64
    if ema.dtype not in (jnp.float32, jnp.float64):
        raise TypeError(
            f"state.ema must be float32 (init_state's) or float64, got {ema.dtype}: an integer or "
            f"half-precision EMA would be truncated or rounded at every call"
        )
    if tuple(initialized.shape) != () or initialized.dtype != jnp.bool_:
        raise TypeError(
            f"state.initialized must be a bool scalar (init_state's), got {initialized.dtype} of shape "
            f"{tuple(initialized.shape)}"
        )
    return state
