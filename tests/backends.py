"""One small adapter per framework, so that a loss test is written once and runs on impl_torch and
impl_tf alike (``tests/test_losses.py``), on every device present (CPU always, CUDA/GPU where
there is one).

    backend.loss("c", bins=10)            a stateful loss object (nn.Module / keras Loss)
    backend.function("r")                 ghm_c_loss / ghm_r_loss
    backend.call(f, pred, target, lw)     -> Result(loss, grad): float64 NumPy, grad of the sum
    backend.state(obj)                    -> (ema as float64 NumPy, initialized as bool)
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass
class Result:
    loss: np.ndarray  # 0-dim for "mean"/"sum", shaped like pred for "none"
    grad: np.ndarray  # d sum(loss) / d pred


class TorchBackend:
    name = "torch"

    def __init__(self, device: str = "cpu") -> None:
        import torch

        import impl_torch

        self.torch, self.impl, self.device = torch, impl_torch, device

    def loss(self, kind: str, **hyper):
        cls = self.impl.GHMCLoss if kind == "c" else self.impl.GHMRLoss
        return cls(**hyper).to(self.device)

    def function(self, kind: str):
        return self.impl.ghm_c_loss if kind == "c" else self.impl.ghm_r_loss

    def tensor(self, a, dtype: str | None = None):
        t = self.torch.as_tensor(np.asarray(a), device=self.device)
        return t if dtype is None else t.to(getattr(self.torch, dtype))

    def apply(self, f, pred, target, label_weight=None, **kw):
        """f called in the framework's argument order, no gradient: for bad-input tests."""
        lw = None if label_weight is None else self.tensor(label_weight)
        return f(self.tensor(pred), self.tensor(target), lw, **kw)

    def call(self, f, pred, target, label_weight=None, *, pred_dtype: str | None = None, **kw) -> Result:
        x = self.tensor(pred, pred_dtype).requires_grad_(True)
        lw = None if label_weight is None else self.tensor(label_weight)
        out = f(x, self.tensor(target), lw, **kw)
        out.sum().backward()
        return Result(out.detach().cpu().double().numpy(), x.grad.cpu().double().numpy())

    def state(self, obj) -> tuple[np.ndarray, bool]:
        return obj.ema.detach().cpu().double().numpy(), bool(obj.ema_initialized)

    def out_dtype(self, obj_or_result) -> str:
        return str(obj_or_result.dtype).replace("torch.", "")


class TFBackend:
    name = "tf"

    def __init__(self, device: str = "cpu") -> None:
        import tensorflow as tf

        import impl_tf

        self.tf, self.impl = tf, impl_tf
        self.device = "/CPU:0" if device == "cpu" else "/GPU:0"

    def loss(self, kind: str, **hyper):
        cls = self.impl.GHMCLoss if kind == "c" else self.impl.GHMRLoss
        return cls(**hyper)

    def function(self, kind: str):
        return self.impl.ghm_c_loss if kind == "c" else self.impl.ghm_r_loss

    def tensor(self, a, dtype: str | None = None):
        with self.tf.device(self.device):
            t = self.tf.constant(np.asarray(a))
            return t if dtype is None else self.tf.cast(t, dtype)

    def apply(self, f, pred, target, label_weight=None, **kw):
        """f called in the framework's argument order, no gradient: for bad-input tests."""
        with self.tf.device(self.device):
            lw = None if label_weight is None else self.tensor(label_weight)
            return f(self.tensor(target), self.tensor(pred), lw, **kw)

    def call(self, f, pred, target, label_weight=None, *, pred_dtype: str | None = None, **kw) -> Result:
        tf = self.tf
        with tf.device(self.device):
            x = self.tensor(pred, pred_dtype)
            lw = None if label_weight is None else self.tensor(label_weight)
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = f(self.tensor(target), x, lw, **kw)
                total = tf.reduce_sum(out)
            grad = tape.gradient(total, x)
        return Result(np.asarray(tf.cast(out, tf.float64)), np.asarray(tf.cast(grad, tf.float64)))

    def state(self, obj) -> tuple[np.ndarray, bool]:
        return obj.ema.numpy().astype(np.float64), bool(obj.ema_initialized.numpy())


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda() -> bool:
    if not _has("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def _tf_gpu() -> bool:
    if not _has("tensorflow"):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


BACKENDS = {"torch": TorchBackend, "tf": TFBackend}
NEEDS = {"torch": "torch", "tf": "tensorflow"}
ACCELERATOR = {"torch": _cuda, "tf": _tf_gpu}


def backend_params():
    """pytest params: every backend x device; absent ones are skipped with the reason."""
    params = []
    for name, cls in BACKENDS.items():
        for device in ("cpu", "cuda"):
            marks = []
            if not _has(NEEDS[name]):
                marks.append(pytest.mark.skip(reason=f"{NEEDS[name]} is not installed"))
            elif device == "cuda" and not ACCELERATOR[name]():
                marks.append(pytest.mark.skip(reason=f"no GPU for {name} on this machine"))
            params.append(pytest.param((cls, device), id=f"{name}-{device}", marks=marks))
    return params
