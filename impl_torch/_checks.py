"""Argument validation shared by the torch losses (spec.md sections 6-7). Runs on the host, on
Python values and static shapes only: nothing here reads a tensor's values."""

from __future__ import annotations

import torch

import ghm_args

# Under torch.compile(dynamic=True) a float hyper-parameter may arrive as a SymFloat.
_SYMBOLIC = (torch.SymFloat, torch.SymInt)

FLOATING, BOOL, INTEGER = "floating", "bool", "integer"


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    ghm_args.check_hyper(
        bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight, symbolic=_SYMBOLIC
    )


def check_mu(mu) -> None:
    ghm_args.check_mu(mu, symbolic=_SYMBOLIC)


def _kind(x: torch.Tensor) -> str:
    if x.dtype == torch.bool:
        return BOOL
    if x.is_floating_point():
        return FLOATING
    return "complex" if x.is_complex() else INTEGER


def check_tensor(name: str, x, *, allowed: tuple[str, ...]) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if _kind(x) not in allowed:
        raise TypeError(f"{name} must have a {' or '.join(allowed)} dtype, got {x.dtype}")


def same_shape(shape, like) -> bool:
    """Dimension by dimension: under torch.compile's automatic dynamic shapes a dimension may be
    symbolic, and a comparison of whole shapes (or ``in``) is not traced reliably."""
    return len(shape) == len(like) and all(a == b for a, b in zip(shape, like))


def fmt(shape) -> str:
    """A shape as "(2, 3)", written so that Dynamo traces it (``str(tuple)`` and ``str(int)`` it
    cannot): the message of an error raised under torch.compile must survive (spec.md 7)."""
    dims = [f"{d}" for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_shape(name: str, x: torch.Tensor, *shapes: torch.Size) -> None:
    if not any(same_shape(x.shape, s) for s in shapes):
        raise ValueError(f"{name} must have shape {' or '.join(fmt(s) for s in shapes)}, got {fmt(x.shape)}")


def compute_dtype(pred: torch.Tensor) -> torch.dtype:
    """Statistics in float32 or better (float64 stays float64; half types are upcast)."""
    return torch.float64 if pred.dtype == torch.float64 else torch.float32


# a float dtype -> (the signed integer of its width, the bits of +inf in it)
_INF_BITS = {
    torch.float16: (torch.int16, 0x7C00),
    torch.bfloat16: (torch.int16, 0x7F80),
    torch.float32: (torch.int32, 0x7F800000),
    torch.float64: (torch.int64, 0x7FF0000000000000),
}


def positive(w: torch.Tensor) -> torch.Tensor:
    """w > 0 exactly, subnormal weights included (spec.md 1): a float is compared by its bits, as
    the integer view of its sign and magnitude (0 < bits <= bits(+inf): positive, not NaN), so
    that a flush-to-zero mode (``torch.set_flush_denormal(True)``) cannot mask 1e-40."""
    if w.dtype == torch.bool:
        return w
    if w.dtype not in _INF_BITS:  # integers (and float8, which no weight needs)
        return w > 0
    as_int, inf = _INF_BITS[w.dtype]
    bits = w.view(as_int)
    return (bits > 0) & (bits <= inf)


def check_label_weight(label_weight: torch.Tensor | None, pred: torch.Tensor) -> None:
    """A label weight of a numeric dtype, shaped like pred or like pred.shape[:-1] (per anchor)."""
    if label_weight is not None:
        check_tensor("label_weight", label_weight, allowed=(FLOATING, BOOL, INTEGER))
        check_shape("label_weight", label_weight, pred.shape, pred.shape[:-1])


def valid_mask(label_weight: torch.Tensor | None, pred: torch.Tensor) -> torch.Tensor | None:
    """valid = label_weight > 0 (NaN and negative weights are masked, a subnormal positive one is
    valid), shaped like pred; per-anchor weights (shape pred.shape[:-1]) are broadcast. None when
    every entry is valid."""
    if label_weight is None:
        return None
    check_label_weight(label_weight, pred)
    valid = positive(label_weight)
    return valid if valid.dim() == pred.dim() else valid.unsqueeze(-1).expand(pred.shape)


def is_class_index_target(target: torch.Tensor, pred: torch.Tensor) -> bool:
    """spec.md section 6: a target is read by its shape. Shaped like pred: a target per entry (an
    integer one holds 0/1 labels). Integer and shaped like pred.shape[:-1]: class indices, which
    need C >= 2 (with C = 1 they could as well be binary labels: a ValueError, never a guess)."""
    if same_shape(target.shape, pred.shape):
        return False
    if _kind(target) != INTEGER:
        raise ValueError(f"target must have the shape of pred {fmt(pred.shape)}, got {fmt(target.shape)}")
    if pred.dim() == 0 or not same_shape(target.shape, pred.shape[:-1]):
        raise ValueError(
            f"an integer target must have the shape of pred {fmt(pred.shape)} (0/1 labels) or "
            f"pred.shape[:-1] = {fmt(pred.shape[:-1])} (class indices), got {fmt(target.shape)}"
        )
    if pred.shape[-1] == 1:
        raise ValueError(
            f"an integer target of shape {fmt(target.shape)} with a single logit per anchor "
            f"(C = 1) is ambiguous: class indices (label 1 = background) or binary labels? Pass "
            f"the labels shaped like pred {fmt(pred.shape)}, e.g. target.unsqueeze(-1), for "
            f"binary labels"
        )
    return True
