"""The port protocol and adapters that turn common loss shapes into it (spec.md section 9).

A *port factory* is ``make_port(*, bins, momentum, **hyper)`` (GHM-R also receives ``mu``);
it returns ``step(pred, target, label_weight)`` taking float32 NumPy arrays of shape (N, C)
and returning the "mean" loss, or ``(loss, grad)`` with ``grad = d loss / d pred``. Each
``make_port`` call is a fresh instance; successive ``step`` calls are training iterations.
Raising ``NotImplementedError`` from the factory marks a setting as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PortFactory = Callable[..., Callable[[np.ndarray, np.ndarray, np.ndarray], Any]]


@dataclass
class StepOutput:
    loss: float
    grad: np.ndarray | None
    # expected values only: the size of float32 rounding in the loss and in each gradient entry
    scale: float = 0.0
    grad_scale: np.ndarray | None = None


def call_step(step, pred: np.ndarray, target: np.ndarray, label_weight: np.ndarray) -> StepOutput:
    """Call a port's step and normalise what it returns (scalar, or (loss, grad))."""
    out = step(pred.copy(), target.copy(), label_weight.copy())
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TypeError(f"step must return loss or (loss, grad), got a tuple of {len(out)}")
        loss, grad = out
        grad = _to_numpy(grad)
        if grad.shape != pred.shape:
            raise TypeError(f"step's grad has shape {grad.shape}, expected pred's {pred.shape}")
        return StepOutput(_to_float(loss), grad.astype(np.float64))
    return StepOutput(_to_float(out), None)


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch.Tensor; NumPy has no bfloat16, so widen floats first
        a = a.detach().cpu()
        a = (a.double() if a.is_floating_point() else a).numpy()
    elif hasattr(a, "numpy"):  # tf.Tensor / keras tensor
        a = a.numpy()
    return np.asarray(a)


def _to_float(a) -> float:
    a = _to_numpy(a)
    if a.size != 1:
        raise TypeError(f"step must return a scalar loss (reduction 'mean'), got shape {a.shape}")
    return float(a.reshape(()))


# ---------------------------------------------------------------- adapters

def from_numpy_function(fn: Callable, *, supports_momentum: bool = False) -> PortFactory:
    """A stateless NumPy loss ``fn(pred, target, label_weight, *, bins, **hyper)`` -> loss or
    (loss, grad). With ``supports_momentum=False`` (default) momentum > 0 is "not applicable"."""

    def make_port(*, bins, momentum, **hyper):
        if momentum and not supports_momentum:
            raise NotImplementedError("this NumPy port has no momentum")
        kwargs = dict(hyper, bins=bins)
        if supports_momentum:
            kwargs["momentum"] = momentum
        return lambda pred, target, lw: fn(pred, target, lw, **kwargs)

    return make_port


def from_torch_module(module_factory: Callable[..., Any], *, device: str = "cpu") -> PortFactory:
    """A torch ``nn.Module`` factory, called as ``module_factory(bins=, momentum=, **hyper)``;
    the module is called as ``module(pred, target, label_weight)``; grad by autograd."""

    def make_port(*, bins, momentum, **hyper):
        import torch

        module = module_factory(bins=bins, momentum=momentum, **hyper)
        if hasattr(module, "to"):
            module = module.to(device)

        def step(pred, target, label_weight):
            x = torch.tensor(pred, device=device, requires_grad=True)
            loss = module(x, torch.tensor(target, device=device), torch.tensor(label_weight, device=device))
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
            if grad is None:  # the loss does not depend on pred at all
                grad = torch.zeros_like(x)
            return loss.detach(), grad

        return step

    return make_port


def from_keras_loss(loss_factory: Callable[..., Any], *, jit_compile: bool = False) -> PortFactory:
    """A Keras-style loss factory, called as ``loss_factory(bins=, momentum=, **hyper)``; the loss
    is called as ``loss(y_true, y_pred, sample_weight)``; grad by ``tf.GradientTape``.
    With ``jit_compile=True`` each step runs inside ``tf.function(jit_compile=True)``."""

    def make_port(*, bins, momentum, **hyper):
        import tensorflow as tf

        loss_obj = loss_factory(bins=bins, momentum=momentum, **hyper)

        def raw_step(pred, target, label_weight):
            with tf.GradientTape() as tape:
                tape.watch(pred)
                loss = loss_obj(target, pred, sample_weight=label_weight)
            grad = tape.gradient(loss, pred)
            if grad is None:
                grad = tf.zeros_like(pred)
            return loss, grad

        compiled = tf.function(raw_step, jit_compile=True, reduce_retracing=True) if jit_compile else raw_step

        def step(pred, target, label_weight):
            loss, grad = compiled(tf.constant(pred), tf.constant(target), tf.constant(label_weight))
            return loss.numpy(), grad.numpy()

        return step

    return make_port


def reference_port(loss: str, dialect: str) -> PortFactory:
    """The reference itself as a port: the catalogue must pass against it (its own proof)."""
    from reference import ghm_c, ghm_r

    fn = ghm_c if loss == "c" else ghm_r

    def make_port(*, bins, momentum, **hyper):
        state = None

        def step(pred, target, label_weight):
            nonlocal state
            r = fn(pred, target, label_weight, bins=bins, momentum=momentum, state=state, dialect=dialect, **hyper)
            state = r.state
            return r.loss, r.grad

        return step

    return make_port
