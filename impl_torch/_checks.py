"""Argument validation shared by the torch losses (spec.md section 7). Runs on the host, on
Python values and static shapes only: nothing here reads a tensor's values."""

from __future__ import annotations

import math
import numbers

import torch

DIALECTS = ("paper", "mmdet")
REDUCTIONS = ("mean", "sum", "none")


def check_hyper(*, bins, momentum, dialect, reduction, loss_weight) -> None:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be a real number in [0, 1), got {momentum!r}")
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, numbers.Real) or not math.isfinite(loss_weight):
        raise ValueError(f"loss_weight must be a finite real number, got {loss_weight!r}")


def check_mu(mu) -> None:
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not (math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu must be a finite real number > 0, got {mu!r}")


def check_tensor(name: str, x, *, kinds: str) -> None:
    """kinds: 'f' floating, 'b' bool, 'i' integer."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    ok = (("f" in kinds and x.is_floating_point()) or ("b" in kinds and x.dtype == torch.bool)
          or ("i" in kinds and not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool))
    if not ok:
        names = {"f": "floating", "b": "bool", "i": "integer"}
        raise TypeError(f"{name} must have a {' or '.join(names[k] for k in kinds)} dtype, got {x.dtype}")


def check_shape(name: str, x: torch.Tensor, *shapes: torch.Size) -> None:
    if x.shape not in shapes:
        raise ValueError(f"{name} must have shape {' or '.join(str(tuple(s)) for s in shapes)}, got {tuple(x.shape)}")


def compute_dtype(pred: torch.Tensor) -> torch.dtype:
    """Statistics in float32 or better (float64 stays float64; half types are upcast)."""
    return torch.float64 if pred.dtype == torch.float64 else torch.float32


def anchor_mask(label_weight: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """valid = label_weight > 0, with per-anchor weights (shape pred.shape[:-1]) broadcast."""
    check_tensor("label_weight", label_weight, kinds="fbi")
    check_shape("label_weight", label_weight, pred.shape, pred.shape[:-1])
    valid = label_weight > 0
    return valid if valid.shape == pred.shape else valid.unsqueeze(-1).expand(pred.shape)
