"""Argument validation shared by the torch losses (spec.md section 7). Runs on the host, on
Python values and static shapes only: nothing here reads a tensor's values."""

from __future__ import annotations

import torch

from ghm_args import check_hyper, check_mu  # noqa: F401 - re-exported for the losses


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
