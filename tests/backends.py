"""One small adapter per framework, so that a loss test is written once and runs on impl_torch,
impl_tf and impl_jax alike (``tests/test_losses.py``), on every device present (CPU always,
CUDA/GPU where there is one). impl_jax's loss object is its pure function with the state held
between calls.

    backend.loss("c", bins=10)            a stateful loss object (nn.Module / keras Loss)
    backend.function("r")                 ghm_c_loss / ghm_r_loss
    backend.call(f, pred, target, lw)     -> Result(loss, grad): float64 NumPy, grad of the sum
    backend.call_with_target(f, ...)      -> (Result, d sum / d target) for a target that is trained
    backend.second_derivative(f, ..., wrt=("target", "pred"))   raises backend.SECOND_ORDER[0] (differentiable once)
    backend.state(obj)                    -> (ema as float64 NumPy, initialized as bool)
    backend.diagnose(f, pred, target, lw) -> (Result, {field: NumPy}): a call with diagnostics (spec.md 13);
                                             f "c" or "r" (the stateless function), or a loss object
                                             built with diagnostics=True
    backend.rounded(a, "float16")         a as the loss sees it in that dtype (float32 NumPy)
    backend.float64_mode()                a context in which float64 stays float64 (JAX: x64)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _numpy_fields(d, to_numpy) -> dict:
    """A framework's Diagnostics as {field: NumPy value}, with the derived shares."""
    out = {name: np.asarray(to_numpy(value)) for name, value in zip(d._fields, d)}
    out["grad_share"], out["plain_share"] = np.asarray(to_numpy(d.grad_share)), np.asarray(to_numpy(d.plain_share))
    return out


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
        self.float64 = torch.float64

    def loss(self, kind: str, **hyper):
        cls = self.impl.GHMCLoss if kind == "c" else self.impl.GHMRLoss
        return cls(**hyper).to(self.device)

    def function(self, kind: str):
        return self.impl.ghm_c_loss if kind == "c" else self.impl.ghm_r_loss

    def tensor(self, a, dtype: str | None = None):
        a = np.asarray(a)
        if a.dtype.name == "bfloat16":  # ml_dtypes' bfloat16, which torch does not read: by its bits
            t = self.torch.from_numpy(a.view(np.int16).copy()).view(self.torch.bfloat16).to(self.device)
        else:
            t = self.torch.as_tensor(a, device=self.device)
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

    def call_with_target(self, f, pred, target, label_weight=None, **kw) -> tuple[Result, np.ndarray]:
        """Like ``call``, with a float target that requires grad: (result, d sum(loss) / d target)."""
        x, t = self.tensor(pred).requires_grad_(True), self.tensor(target).requires_grad_(True)
        lw = None if label_weight is None else self.tensor(label_weight)
        out = f(x, t, lw, **kw)
        out.sum().backward()
        return Result(out.detach().cpu().double().numpy(), x.grad.cpu().double().numpy()), t.grad.cpu().double().numpy()

    # a second derivative through the loss raises this (spec.md 5)
    SECOND_ORDER = (RuntimeError, "differentiable once")

    def second_derivative(self, f, pred, target, wrt=("pred", "pred"), **kw):
        """d/d wrt[1] of sum(d loss / d wrt[0]) (each "pred" or "target"), as a gradient penalty or
        a Hessian-vector product would take it."""
        x, t = self.tensor(pred).requires_grad_(True), self.tensor(target).requires_grad_(True)
        inputs = {"pred": x, "target": t}
        (g,) = self.torch.autograd.grad(f(x, t, **kw).sum(), inputs[wrt[0]], create_graph=True)
        (second,) = self.torch.autograd.grad(g.sum(), inputs[wrt[1]], allow_unused=True)
        return second

    @contextlib.contextmanager
    def threads(self, n: int | None):
        """Run on n intra-op threads (None: as configured)."""
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(n or before)
        try:
            yield
        finally:
            self.torch.set_num_threads(before)

    def state(self, obj) -> tuple[np.ndarray, bool]:
        return obj.ema.detach().cpu().double().numpy(), bool(obj.ema_initialized)

    def diagnose(self, f, pred, target, label_weight=None, **kw):
        if not isinstance(f, str):
            result = self.call(f, pred, target, label_weight, **kw)
            return result, _numpy_fields(f.last_diagnostics(), lambda v: v.cpu().numpy())
        x = self.tensor(pred).requires_grad_(True)
        lw = None if label_weight is None else self.tensor(label_weight)
        out, d = self.function(f)(x, self.tensor(target), lw, diagnostics=True, **kw)
        out.sum().backward()
        result = Result(out.detach().cpu().double().numpy(), x.grad.cpu().double().numpy())
        return result, _numpy_fields(d, lambda v: v.cpu().numpy())

    def rounded(self, a, dtype: str) -> np.ndarray:
        """a rounded to dtype and back to float32: the values a loss sees when given dtype."""
        return self.tensor(a, dtype).cpu().float().numpy()

    def float64_mode(self):
        """Where float64 arrays stay float64 (always, here)."""
        return contextlib.nullcontext()

    def out_dtype(self, obj_or_result) -> str:
        return str(obj_or_result.dtype).replace("torch.", "")


class TFBackend:
    name = "tf"

    def __init__(self, device: str = "cpu") -> None:
        import tensorflow as tf

        import impl_tf

        self.tf, self.impl = tf, impl_tf
        self.device = "/CPU:0" if device == "cpu" else "/GPU:0"
        self.float64 = tf.float64

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

    def call_with_target(self, f, pred, target, label_weight=None, **kw) -> tuple[Result, np.ndarray]:
        """Like ``call``, with a float target the tape watches: (result, d sum(loss) / d target)."""
        tf = self.tf
        with tf.device(self.device):
            x, t = self.tensor(pred), self.tensor(target)
            lw = None if label_weight is None else self.tensor(label_weight)
            with tf.GradientTape() as tape:
                tape.watch([x, t])
                out = f(t, x, lw, **kw)
                total = tf.reduce_sum(out)
            grad, target_grad = tape.gradient(total, [x, t])
        f64 = lambda a: np.asarray(tf.cast(a, tf.float64))  # noqa: E731
        return Result(f64(out), f64(grad)), f64(target_grad)

    SECOND_ORDER = (NotImplementedError, "differentiable once")

    def second_derivative(self, f, pred, target, wrt=("pred", "pred"), **kw):
        tf = self.tf
        with tf.device(self.device):
            x, t = self.tensor(pred), self.tensor(target)
            inputs = {"pred": x, "target": t}
            with tf.GradientTape() as outer:
                outer.watch(inputs[wrt[1]])
                with tf.GradientTape() as inner:
                    inner.watch([x, t])
                    total = tf.reduce_sum(f(t, x, **kw))
                g = inner.gradient(total, inputs[wrt[0]])
            return outer.gradient(g, inputs[wrt[1]])

    @contextlib.contextmanager
    def threads(self, n: int | None):
        """tf fixes its thread pools when it starts: the configured pool, whatever n is."""
        yield

    def state(self, obj) -> tuple[np.ndarray, bool]:
        return obj.ema.numpy().astype(np.float64), bool(obj.ema_initialized.numpy())

    def diagnose(self, f, pred, target, label_weight=None, **kw):
        tf = self.tf
        if not isinstance(f, str):  # a Keras loss built with diagnostics=True
            result = self.call(f, pred, target, label_weight, **kw)
            return result, _numpy_fields(f.last_diagnostics(), np.asarray)
        with tf.device(self.device):
            x = self.tensor(pred)
            lw = None if label_weight is None else self.tensor(label_weight)
            with tf.GradientTape() as tape:
                tape.watch(x)
                out, d = self.function(f)(self.tensor(target), x, lw, diagnostics=True, **kw)
                total = tf.reduce_sum(out)
            grad = tape.gradient(total, x)
        result = Result(np.asarray(tf.cast(out, tf.float64)), np.asarray(tf.cast(grad, tf.float64)))
        return result, _numpy_fields(d, np.asarray)

    def rounded(self, a, dtype: str) -> np.ndarray:
        return np.asarray(self.tf.cast(self.tensor(a, dtype), "float32"))

    def float64_mode(self):
        return contextlib.nullcontext()


class _JaxLoss:
    """impl_jax's pure function with its state held between calls: what the suite's stateful tests
    call a loss object (``backend.call`` threads the state through)."""

    def __init__(self, fn, hyper: dict):
        self.fn, self.hyper, self.state = fn, hyper, None
        empty = np.zeros((0, 1), np.float32)
        fn(empty, empty, **hyper)  # the function checks its arguments first: bad ones raise here, as a constructor's

    def pure(self, pred, target, label_weight=None, **kw):
        return self.fn(pred, target, label_weight, state=self.state, **self.hyper, **kw)


class JaxBackend:
    name = "jax"

    def __init__(self, device: str = "cpu") -> None:
        import jax
        import jax.numpy as jnp

        import impl_jax

        self.jax, self.jnp, self.impl = jax, jnp, impl_jax
        self.device = jax.devices("cpu" if device == "cpu" else "gpu")[0]
        self.float64 = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    def loss(self, kind: str, **hyper):
        return _JaxLoss(self.impl.ghm_c_loss if kind == "c" else self.impl.ghm_r_loss, hyper)

    def function(self, kind: str):
        fn = self.impl.ghm_c_loss if kind == "c" else self.impl.ghm_r_loss
        return lambda pred, target, label_weight=None, **kw: fn(pred, target, label_weight, **kw)[0]

    def tensor(self, a, dtype: str | None = None):
        t = self.jax.device_put(np.asarray(a), self.device)
        return t if dtype is None else t.astype(dtype)

    def apply(self, f, pred, target, label_weight=None, **kw):
        lw = None if label_weight is None else self.tensor(label_weight)
        return f(self.tensor(pred), self.tensor(target), lw, **kw)

    def _value_and_grads(self, f, x, t, lw, argnums, kw):
        """(loss, its gradients, the new state): a loss object's state moves once per call."""
        jnp = self.jnp
        if isinstance(f, _JaxLoss):

            def total(x, t):
                out, state = f.pure(x, t, lw, **kw)
                return jnp.sum(out), (out, state)
        else:

            def total(x, t):
                out = f(x, t, lw, **kw)
                return jnp.sum(out), (out, None)

        (_, (out, state)), grads = self.jax.value_and_grad(total, argnums=argnums, has_aux=True)(x, t)
        if isinstance(f, _JaxLoss):
            f.state = state
        return out, grads

    def call(self, f, pred, target, label_weight=None, *, pred_dtype: str | None = None, **kw) -> Result:
        x, t = self.tensor(pred, pred_dtype), self.tensor(target)
        lw = None if label_weight is None else self.tensor(label_weight)
        out, grad = self._value_and_grads(f, x, t, lw, 0, kw)
        return Result(np.asarray(out, np.float64), np.asarray(grad, np.float64))

    def call_with_target(self, f, pred, target, label_weight=None, **kw) -> tuple[Result, np.ndarray]:
        x, t = self.tensor(pred), self.tensor(target)
        lw = None if label_weight is None else self.tensor(label_weight)
        out, (grad, target_grad) = self._value_and_grads(f, x, t, lw, (0, 1), kw)
        f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
        return Result(f64(out), f64(grad)), f64(target_grad)

    SECOND_ORDER = (NotImplementedError, "differentiable once")

    def second_derivative(self, f, pred, target, wrt=("pred", "pred"), **kw):
        x, t, jnp = self.tensor(pred), self.tensor(target), self.jnp
        first, second = ({"pred": 0, "target": 1}[w] for w in wrt)
        g = self.jax.grad(lambda x, t: jnp.sum(f(x, t, **kw)), argnums=first)
        return self.jax.grad(lambda x, t: jnp.sum(g(x, t)), argnums=second)(x, t)

    @contextlib.contextmanager
    def threads(self, n: int | None):
        """XLA fixes its thread pool when it starts: the configured pool, whatever n is."""
        yield

    def rounded(self, a, dtype: str) -> np.ndarray:
        return np.asarray(self.tensor(a, dtype).astype("float32"))

    def float64_mode(self):
        """JAX makes float64 arrays float32 unless x64 is enabled: enabled for the block."""
        return self.jax.enable_x64(True)

    def state(self, obj) -> tuple[np.ndarray, bool]:
        if obj.state is None:
            return np.zeros(obj.hyper["bins"]), False
        return np.asarray(obj.state.ema, np.float64), bool(obj.state.initialized)

    def diagnose(self, f, pred, target, label_weight=None, **kw):
        x, t = self.tensor(pred), self.tensor(target)
        lw = None if label_weight is None else self.tensor(label_weight)
        if isinstance(f, str):
            fn = self.impl.ghm_c_loss if f == "c" else self.impl.ghm_r_loss
            state, kw = None, {**kw, "diagnostics": True}
        else:
            fn, state, kw = f.fn, f.state, {**f.hyper, **kw}
            assert kw.get("diagnostics"), "a loss object built with diagnostics=True"

        def total(x):
            out, new_state, d = fn(x, t, lw, state=state, **kw)
            return self.jnp.sum(out), (out, new_state, d)

        # jitted: op-by-op dispatch compiles each op for each new shape, several times slower here
        (_, (out, new_state, d)), grad = self.jax.jit(self.jax.value_and_grad(total, has_aux=True))(x)
        if not isinstance(f, str):
            f.state = new_state
        return Result(np.asarray(out, np.float64), np.asarray(grad, np.float64)), _numpy_fields(d, np.asarray)


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


def _jax_gpu() -> bool:
    if not _has("jax"):
        return False
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


BACKENDS = {"torch": TorchBackend, "tf": TFBackend, "jax": JaxBackend}
NEEDS = {"torch": "torch", "tf": "tensorflow", "jax": "jax"}
ACCELERATOR = {"torch": _cuda, "tf": _tf_gpu, "jax": _jax_gpu}


def backend_params():
    """pytest params: every backend on the CPU, and on the GPU where it has one (a machine without
    a GPU gets no GPU parameters at all, rather than hundreds of skips); an uninstalled backend is
    skipped with the reason."""
    params = []
    for name, cls in BACKENDS.items():
        installed = _has(NEEDS[name])
        for device in ("cpu", "cuda"):
            if device == "cuda" and not (installed and ACCELERATOR[name]()):
                continue
            marks = [] if installed else [pytest.mark.skip(reason=f"{NEEDS[name]} is not installed")]
            params.append(pytest.param((cls, device), id=f"{name}-{device}", marks=marks))
    return params
