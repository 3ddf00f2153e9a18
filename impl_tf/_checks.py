"""Argument validation for the tf losses (spec.md sections 6-7): Python values and static shapes
at trace time; where a dimension is unknown then (a ``tf.function`` with ``None`` dimensions),
the shape is checked when the graph runs, by ops that require equal shapes, never by ops that
broadcast. Nothing here reads a tensor's values."""

from __future__ import annotations

import tensorflow as tf

import ghm_args
from ghm_args import check_mu  # noqa: F401 - re-exported for the losses

FLOATING, BOOL, INTEGER = "floating", "bool", "integer"


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    ghm_args.check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)


def _kind(d: tf.DType) -> str:
    if d == tf.bool:
        return BOOL
    if d.is_floating:
        return FLOATING
    return INTEGER if d.is_integer else d.name


def as_tensor(name: str, x, *, allowed: tuple[str, ...]) -> tf.Tensor:
    """Convert, and check the dtype kind."""
    try:
        x = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be convertible to a tensor: {e}") from None
    if _kind(x.dtype) not in allowed:
        raise TypeError(f"{name} must have a {' or '.join(allowed)} dtype, got {x.dtype.name}")
    return x


def _shape_str(shape: tf.TensorShape) -> str:
    return str(tuple(shape.as_list())) if shape.rank is not None else "(unknown rank)"


def matches(shape: tf.TensorShape, like: tf.TensorShape) -> bool:
    """Could ``shape`` equal ``like`` (same rank, no known dimension differing)?"""
    return shape.rank is not None and like.rank is not None and shape.is_compatible_with(like)


def check_shape(name: str, x: tf.Tensor, *likes: tf.TensorShape) -> None:
    """At trace time, as far as the static shapes tell; ``same_shape`` checks the rest at run time."""
    if x.shape.rank is None or any(s.rank is None for s in likes):
        return
    if not any(matches(x.shape, s) for s in likes):
        raise ValueError(
            f"{name} must have shape {' or '.join(_shape_str(s) for s in likes)}, got {_shape_str(x.shape)}"
        )


def require_rank(name: str, x: tf.Tensor, why: str) -> None:
    if x.shape.rank is None:
        raise ValueError(f"{name} must have a known rank {why}; got a tensor of unknown rank")


def fully_known(*tensors: tf.Tensor) -> bool:
    return all(t.shape.is_fully_defined() for t in tensors)


def same_shape(name: str, x: tf.Tensor, like: tf.Tensor, like_name: str = "y_pred") -> tf.Tensor:
    """``x``, checked at run time to have the shape of ``like`` when a dimension is unknown at
    trace time (returned as is otherwise). Two checks, because each survives where the other
    is dropped: an assertion (graph mode; XLA ignores asserts) and a Select, which requires
    equal shapes (XLA; graph optimisation may fold a Select whose condition is all true)."""
    if fully_known(x, like):
        return x
    tf.debugging.assert_equal(tf.shape(x), tf.shape(like), message=f"{name} must have the shape of {like_name}")
    return tf.raw_ops.Select(condition=tf.ones_like(like, dtype=tf.bool), x=x, y=x)


def select(condition: tf.Tensor, x: tf.Tensor, y) -> tf.Tensor:
    """where(condition, x, y) that requires ``x`` shaped exactly like ``condition``: checked at
    trace time when the shapes are known (then a plain ``tf.where``, which XLA fuses), else by
    TF's v1 ``Select`` (an InvalidArgumentError at run time, also under XLA, where ``tf.where``
    would broadcast)."""
    if fully_known(condition, x):
        if condition.shape != x.shape:
            raise ValueError(f"shapes {tuple(x.shape)} and {tuple(condition.shape)} differ")
        return tf.where(condition, x, tf.cast(y, x.dtype))
    y = tf.fill(tf.shape(x), tf.cast(y, x.dtype)) if not isinstance(y, tf.Tensor) else y
    return tf.raw_ops.Select(condition=condition, x=x, y=y)


def expand_per_anchor(mask: tf.Tensor, pred: tf.Tensor, name: str) -> tf.Tensor:
    """A mask shaped like pred.shape[:-1] (one value per anchor), broadcast over the last axis;
    at run time its shape must equal pred.shape[:-1] exactly."""
    if not fully_known(mask, pred):
        tf.debugging.assert_equal(
            tf.shape(mask), tf.shape(pred)[:-1], message=f"{name} must have the shape of y_pred or y_pred.shape[:-1]"
        )
        # XLA drops asserts: the reshape fails there unless the anchor counts agree
        mask = tf.reshape(mask, tf.shape(pred)[:-1])
    return tf.broadcast_to(mask[..., None], tf.shape(pred))


_SIGNED = {2: tf.int16, 4: tf.int32, 8: tf.int64}


def positive(w: tf.Tensor) -> tf.Tensor:
    """w > 0 exactly, subnormal weights included (spec.md 1): a float is compared by its bits, as
    the integer view of its sign and magnitude (0 < bits <= bits(+inf): positive, not NaN), because
    TensorFlow's CPU kernels and XLA flush subnormals to zero in a float comparison (1e-40 > 0 was
    False there)."""
    if w.dtype == tf.bool:
        return w
    if not w.dtype.is_floating:
        return w > tf.zeros([], w.dtype)
    as_int = _SIGNED[w.dtype.size]
    bits = tf.bitcast(w, as_int)
    inf = tf.bitcast(tf.constant(float("inf"), w.dtype), as_int)
    return (bits > tf.zeros([], as_int)) & (bits <= inf)


def to_mask(name: str, weight, pred: tf.Tensor) -> tf.Tensor:
    """valid = weight > 0 (NaN and negative weights are masked, a subnormal positive one is valid),
    shaped like pred or like pred.shape[:-1] (per anchor, broadcast). Which of the two is decided by the ranks: when one
    is unknown at trace time, when the graph runs."""
    w = as_tensor(name, weight, allowed=(FLOATING, BOOL, INTEGER))
    check_shape(name, w, pred.shape, pred.shape[:-1] if pred.shape.rank else tf.TensorShape(None))
    valid = positive(w)
    if w.shape.rank is None or pred.shape.rank is None:
        if in_xla():  # XLA compiles both branches of a cond, and one of them has mismatched shapes
            raise ValueError(
                f"{name} and y_pred must have known ranks when traced for XLA (jit_compile): with a "
                f"rank unknown, whether {name} is per entry or per anchor is only known at run time; "
                f"give the tf.function an input_signature with ranks, e.g. TensorSpec([None, None])"
            )
        return tf.cond(
            tf.equal(tf.rank(valid), tf.rank(pred)),
            lambda: same_shape(name, valid, pred),
            lambda: expand_per_anchor(valid, pred, name),
        )
    if w.shape.rank == pred.shape.rank:
        return same_shape(name, valid, pred)
    return expand_per_anchor(valid, pred, name)


def in_xla() -> bool:
    """Is the op being built for XLA (tf.function(jit_compile=True))? TF's own ops ask the same."""
    try:
        from tensorflow.python.ops import control_flow_util

        return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
    except (ImportError, AttributeError):
        return False


def compute_dtype(pred: tf.Tensor) -> tf.DType:
    """Statistics in float32 or better (float64 stays float64; half types are upcast)."""
    return tf.float64 if pred.dtype == tf.float64 else tf.float32


def is_class_index_target(target: tf.Tensor, pred: tf.Tensor) -> bool:
    """spec.md section 6: a target is read by its shape. Shaped like pred: a target per entry (an
    integer one holds 0/1 labels). Integer and shaped like pred.shape[:-1]: class indices, which
    need C >= 2 (with C = 1 they could as well be binary labels: a ValueError, never a guess)."""
    if not target.dtype.is_integer:
        check_shape("y_true", target, pred.shape)
        return False
    require_rank("y_pred", pred, "to tell class indices from per-entry labels")
    require_rank("y_true", target, "to tell class indices from per-entry labels")
    if matches(target.shape, pred.shape):
        return False
    if pred.shape.rank == 0 or not matches(target.shape, pred.shape[:-1]):
        raise ValueError(
            f"an integer y_true must have the shape of y_pred {_shape_str(pred.shape)} (0/1 labels) or "
            f"y_pred.shape[:-1] = {_shape_str(pred.shape[:-1])} (class indices), got "
            f"{_shape_str(target.shape)}"
        )
    if pred.shape[-1] is None:
        raise ValueError(
            "y_pred must have a known last dimension (the number of classes C) when y_true holds "
            "class indices; got y_pred of shape " + _shape_str(pred.shape)
        )
    if pred.shape[-1] == 1:
        raise ValueError(
            f"an integer y_true of shape {_shape_str(target.shape)} with a single logit per anchor "
            f"(C = 1) is ambiguous: class indices (label 1 = background) or binary labels? Pass the "
            f"labels shaped like y_pred {_shape_str(pred.shape)}, e.g. y[..., None], for binary labels"
        )
    return True
