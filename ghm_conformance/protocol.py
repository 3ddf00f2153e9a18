"""The port protocol (spec.md section 9), how the kit calls a port, and adapters that turn the
shapes GHM ports are written in into it.

A *port factory* is ``make_port(*, bins, momentum, **hyper)`` (GHM-R also receives ``mu``);
it returns ``step(pred, target, label_weight)`` taking float32 NumPy arrays of shape (N, C)
and returning the "mean" loss, or ``(loss, grad)`` with ``grad = d loss / d pred``. A loss
shaped like ``pred`` is read as per-entry losses (``reduction="none"``) and averaged over the
valid entries. A ``step(pred, target)`` with two parameters has no label weight: the kit then
draws unmasked inputs and the masking properties are "not applicable". Each ``make_port``
call is a fresh instance; successive ``step`` calls are training iterations. Raising
``NotImplementedError`` from the factory marks a setting (e.g. momentum) as unsupported.

Adapters: ``from_torch_module``, ``from_torch_function``, ``from_keras_loss``,
``from_jax_function``, ``from_numpy_function``, ``from_weights`` (a port that returns only beta), and
``with_class_index_targets`` (a port that takes mmdetection-style labels of shape (N,)) and
``with_anchor_weights`` (a port that takes one label weight per row).
"""

from __future__ import annotations

import inspect
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

PortFactory = Callable[..., Callable[..., Any]]


class DeclaredPortFactory(Protocol):
    """A port factory carrying declarations about its step, as function attributes set by the
    adapters below. Each one is optional on a factory: the kit reads them with ``getattr`` and
    a default (``probe``)."""

    label_weight: bool  # the step takes a label weight (default True)
    class_index: bool  # the step takes class indices (N,) and per-anchor weights (N,) (default False)
    anchor_weights: bool  # the step takes one label weight per row (N,) (default False)
    framework: str | None  # "torch", "tf", "jax": the bundled loss of that framework is the cost baseline

    def __call__(self, **kw: Any) -> Callable[..., Any]: ...


def declaring(make_port: PortFactory) -> DeclaredPortFactory:
    """``make_port`` itself, seen as a factory on which declarations can be set."""
    return cast(DeclaredPortFactory, make_port)


class PortTimeout(BaseException):
    """A call of the port took longer than the time budget (BaseException: port code that
    catches Exception cannot swallow it)."""


@dataclass
class StepOutput:
    loss: float
    grad: np.ndarray | None
    seconds: float = 0.0


@dataclass
class Clock:
    """The per-call time budget: ``timeout`` seconds for every call but the run's first, which
    may compile (``first_timeout``). Records every call's duration."""

    timeout: float | None = None
    first_timeout: float | None = None
    times: list[float] = field(default_factory=list)

    def limit(self) -> float | None:
        if self.timeout is None:
            return None
        return self.first_timeout if not self.times and self.first_timeout else self.timeout

    def run(self, fn, *args):
        limit = self.limit()
        use_alarm = (
            limit is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        if use_alarm:

            def on_alarm(signum, frame):
                raise PortTimeout(f"a call of the port did not return within {limit:g} s")

            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, limit)
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - start
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            self.times.append(elapsed)
            if limit is not None and elapsed > limit:
                raise PortTimeout(f"a call of the port took {elapsed:.3g} s, over the budget of {limit:g} s")


@dataclass
class Port:
    """A port factory and what the kit found out about it (``probe``)."""

    make_port: PortFactory
    label_weight: bool = True  # step takes a label weight
    class_index: bool = False  # step takes class indices (N,) and per-anchor weights (N,)
    anchor_weights: bool = False  # step takes one label weight per row (N,): rows are masked whole
    supports_momentum: bool = True
    framework: str | None = None  # "torch", "tf", "jax" (declared by the from_* adapters), None if unknown
    momentum_note: str = ""
    returns_grad: bool = True
    hint: str = ""  # what the probe suspects (e.g. the port computes the other GHM loss)
    clock: Clock = field(default_factory=Clock)

    def instance(self, *, bins: int, momentum: float, **hyper):
        return self.make_port(bins=bins, momentum=momentum, **hyper)


def takes_label_weight(step) -> bool:
    """False when ``step`` has exactly two positional parameters (pred, target)."""
    try:
        params = [
            p
            for p in inspect.signature(step).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        varargs = any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(step).parameters.values())
    except (TypeError, ValueError):
        return True
    return varargs or len(params) != 2


def call_step(
    step,
    pred: np.ndarray,
    target: np.ndarray,
    label_weight: np.ndarray,
    *,
    with_label_weight: bool = True,
    clock: Clock | None = None,
) -> StepOutput:
    """Call a port's step on copies of the arrays and normalise what it returns: a scalar loss,
    (loss, grad), or per-entry losses shaped like pred (averaged over the valid entries)."""
    args = (pred.copy(), target.copy()) + ((label_weight.copy(),) if with_label_weight else ())
    clock = clock or Clock()
    out = clock.run(step, *args)
    seconds = clock.times[-1]
    grad = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TypeError(f"step must return loss or (loss, grad), got a tuple of {len(out)}")
        out, grad = out
        grad = to_numpy(grad)
        if grad.shape != pred.shape:
            raise TypeError(f"step's grad has shape {grad.shape}, expected pred's {pred.shape}")
        grad = grad.astype(np.float64)
    loss = to_numpy(out)
    if loss.size != 1 and loss.shape == pred.shape:  # per-entry losses (reduction "none")
        loss = np.asarray(np.sum(loss.astype(np.float64)) / max(int(np.sum(label_weight > 0)), 1))
    if loss.size != 1:
        raise TypeError(
            f"step must return a scalar loss (reduction 'mean') or per-entry losses shaped like pred "
            f"{pred.shape}, got shape {loss.shape}"
        )
    return StepOutput(float(loss.reshape(())), grad, seconds)


def to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch.Tensor; NumPy has no bfloat16, so widen floats first
        a = a.detach().cpu()
        a = (a.double() if a.is_floating_point() else a).numpy()
    elif hasattr(a, "numpy"):  # tf.Tensor / keras tensor
        a = a.numpy()
    return np.asarray(a)


# ---------------------------------------------------------------- target and weight conversions


def class_indices(target: np.ndarray, label_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """One-hot (N, C) targets and per-anchor-constant weights as mmdetection passes them: labels
    (N,) with C = background, weights (N,). The kit draws only such cases for these ports."""
    n_classes = target.shape[-1]
    labels = np.where(target.max(axis=-1) > 0, target.argmax(axis=-1), n_classes).astype(np.int64)
    return labels, None if label_weight is None else label_weight[..., 0].copy()


def with_class_index_targets(make_port: PortFactory) -> PortFactory:
    """A port whose step takes class indices ``(N,)`` (index C = background) and per-anchor
    label weights ``(N,)``, as mmdetection passes them, seen through the protocol."""

    def factory(**kw):
        step = make_port(**kw)

        def converted(pred, target, label_weight=None):
            labels, weights = class_indices(target, label_weight)
            return step(pred, labels) if weights is None else step(pred, labels, weights)

        return converted

    declared = declaring(factory)
    declared.class_index = True
    declared.label_weight = getattr(make_port, "label_weight", True)
    declared.framework = getattr(make_port, "framework", None)
    return factory


def from_weights(make_weights: PortFactory, loss_kind: str, framework: str | None = None) -> PortFactory:
    """A port that only computes the harmonizing weights: ``make_weights(*, bins, momentum,
    **hyper)`` returns ``weights(pred, target, label_weight)`` -> beta per entry (0 where masked).
    The kit forms the loss (1/N) sum beta_i L_i and its gradient beta_i dL_i / N in float64."""

    def make_port(*, bins, momentum, **hyper):
        weigh = make_weights(bins=bins, momentum=momentum, **hyper)

        def step(pred, target, label_weight):
            beta = to_numpy(weigh(pred, target, label_weight)).astype(np.float64)
            valid = label_weight > 0
            n = max(int(valid.sum()), 1)
            from .expected import per_entry_terms

            per, dper = per_entry_terms(loss_kind, pred, target, hyper.get("mu"))
            beta = np.where(valid, beta, 0.0)
            return float(np.sum(beta * np.where(valid, per, 0.0)) / n), beta * np.where(valid, dper, 0.0) / n

        return step

    declaring(make_port).framework = framework  # the framework the weights are computed in, for the cost baseline
    return make_port


def with_anchor_weights(make_port: PortFactory) -> PortFactory:
    """A port whose step takes one label weight per anchor (row), shape ``(N,)``, as Keras's
    per-sample ``sample_weight`` or Det3D's heads pass them: the kit masks rows whole and passes
    each row's weight."""

    def factory(**kw):
        step = make_port(**kw)
        return lambda pred, target, label_weight: step(pred, target, label_weight[..., 0].copy())

    declared = declaring(factory)
    declared.anchor_weights = True
    declared.class_index = getattr(make_port, "class_index", False)
    declared.label_weight = getattr(make_port, "label_weight", True)
    declared.framework = getattr(make_port, "framework", None)
    return factory


# ---------------------------------------------------------------- framework adapters


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


def _torch_step(call, *, device, label_weight: bool, class_index: bool, call_kwargs: dict, per_anchor: bool = False):
    import torch

    def step(pred, target, lw=None):
        valid = None if lw is None else np.asarray(lw) > 0
        if class_index:
            target, lw = class_indices(target, lw)
        elif per_anchor and lw is not None:
            lw = lw[..., 0].copy()
        x = torch.tensor(pred, device=device, requires_grad=True)
        args = (x, torch.tensor(target, device=device)) + ((torch.tensor(lw, device=device),) if label_weight else ())
        loss = call(*args, **call_kwargs)
        if loss.dim() and loss.shape == x.shape:  # reduction "none": the mean over valid entries
            n = max(int(valid.sum()) if valid is not None else x.numel(), 1)
            loss = loss.sum() / n
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
        return loss.detach(), (torch.zeros_like(x) if grad is None else grad)  # None: loss ignores pred

    return step


def _declare(make_port, *, label_weight: bool, targets: str, weights: str, framework: str):
    make_port.framework = framework  # the bundled loss of the same framework is its cost baseline
    make_port.class_index = targets == "class_index"
    make_port.anchor_weights = weights == "per_anchor" or make_port.class_index
    make_port.label_weight = label_weight
    return make_port


def from_torch_module(
    module_factory: Callable[..., Any],
    *,
    device: str = "cpu",
    label_weight: bool = True,
    targets: str = "per_entry",
    weights: str = "per_entry",
    call_kwargs: dict | None = None,
) -> PortFactory:
    """A torch ``nn.Module`` factory, called as ``module_factory(bins=, momentum=, **hyper)``; the
    module is called as ``module(pred, target, label_weight, **call_kwargs)`` (without
    ``label_weight`` if False; with class indices and per-anchor weights if ``targets=
    "class_index"``; with one weight per row, shape (N,), if ``weights="per_anchor"``); gradient
    by autograd; per-entry output is averaged over valid entries."""

    def make_port(*, bins, momentum, **hyper):
        module = module_factory(bins=bins, momentum=momentum, **hyper)
        if hasattr(module, "to"):
            module = module.to(device)
        return _torch_step(
            module,
            device=device,
            label_weight=label_weight,
            class_index=targets == "class_index",
            call_kwargs=call_kwargs or {},
            per_anchor=weights == "per_anchor",
        )

    return _declare(make_port, label_weight=label_weight, targets=targets, weights=weights, framework="torch")


def from_torch_function(
    fn: Callable,
    *,
    device: str = "cpu",
    label_weight: bool = True,
    targets: str = "per_entry",
    weights: str = "per_entry",
    call_kwargs: dict | None = None,
) -> PortFactory:
    """A plain torch function ``fn(pred, target, label_weight, *, bins, **hyper)`` returning the
    loss tensor (stateless: momentum is "not applicable"); gradient by autograd."""

    def make_port(*, bins, momentum, **hyper):
        if momentum:
            raise NotImplementedError("a plain function has no EMA state")
        kwargs = dict(call_kwargs or {}, bins=bins, **hyper)
        return _torch_step(
            fn,
            device=device,
            label_weight=label_weight,
            class_index=targets == "class_index",
            call_kwargs=kwargs,
            per_anchor=weights == "per_anchor",
        )

    return _declare(make_port, label_weight=label_weight, targets=targets, weights=weights, framework="torch")


def from_keras_loss(
    loss_factory: Callable[..., Any], *, jit_compile: bool = False, label_weight: bool = True, device: str | None = None
) -> PortFactory:
    """A Keras-style loss factory, called as ``loss_factory(bins=, momentum=, **hyper)``; the loss
    is called as ``loss(y_true, y_pred, sample_weight)``; gradient by ``tf.GradientTape``.
    With ``jit_compile=True`` each step runs inside ``tf.function(jit_compile=True)``; with
    ``device`` (e.g. "/GPU:0") everything runs under ``tf.device(device)``."""

    def make_port(*, bins, momentum, **hyper):
        import tensorflow as tf

        with tf.device(device):
            loss_obj = loss_factory(bins=bins, momentum=momentum, **hyper)

        def raw_step(pred, target, lw):
            with tf.GradientTape() as tape:
                tape.watch(pred)
                loss = loss_obj(target, pred, sample_weight=lw)
            grad = tape.gradient(loss, pred)
            return loss, (tf.zeros_like(pred) if grad is None else grad)

        compiled = tf.function(raw_step, jit_compile=True, reduce_retracing=True) if jit_compile else raw_step

        def step(pred, target, lw=None):
            with tf.device(device):
                loss, grad = compiled(tf.constant(pred), tf.constant(target), None if lw is None else tf.constant(lw))
            return loss.numpy(), grad.numpy()

        return step

    declared = declaring(make_port)
    declared.label_weight = label_weight
    declared.framework = "tf"
    return make_port


def from_jax_function(
    fn: Callable,
    *,
    stateful: bool = False,
    jit: bool = True,
    label_weight: bool = True,
    targets: str = "per_entry",
    weights: str = "per_entry",
    call_kwargs: dict | None = None,
    device: str | None = None,
) -> PortFactory:
    """A JAX loss function, gradient by ``jax.value_and_grad``, each step under ``jax.jit`` (the
    hyper-parameters static; one compilation per shape and setting, shared by the instances)
    unless ``jit=False``. Two shapes:

    - ``stateful=False``: ``fn(pred, target, label_weight, *, bins, **hyper)`` -> loss (momentum
      is "not applicable");
    - ``stateful=True``, the optax style of ``impl_jax``: ``fn(pred, target, label_weight, *, bins,
      momentum, state, **hyper)`` -> ``(loss, new_state)``, the state a pytree that starts as None
      and is carried from step to step.

    ``targets="class_index"`` / ``weights="per_anchor"`` / ``label_weight=False`` as for
    ``from_torch_module``; ``device`` e.g. "gpu" (default: JAX's default device). A per-entry loss
    is averaged over the valid entries."""
    compiled: dict = {}  # hyper-parameters -> the jitted step: instances share compilations

    def gradient_of(kwargs: dict):
        import jax
        import jax.numpy as jnp

        def objective(x, t, lw, state, n_valid):
            args = (x, t) + ((lw,) if label_weight else ())
            loss, new_state = fn(*args, state=state, **kwargs) if stateful else (fn(*args, **kwargs), None)
            if loss.ndim and loss.shape == x.shape:  # reduction "none": the mean over valid entries
                loss = jnp.sum(loss) / n_valid
            return loss, new_state

        value_and_grad = jax.value_and_grad(objective, has_aux=True)
        if not jit:
            return value_and_grad
        try:
            key = tuple(sorted(kwargs.items()))
            hash(key)
        except TypeError:  # an unhashable hyper-parameter: this instance compiles its own
            return jax.jit(value_and_grad)
        return compiled.setdefault(key, jax.jit(value_and_grad))

    def make_port(*, bins, momentum, **hyper):
        import jax

        if momentum and not stateful:
            raise NotImplementedError("a stateless JAX function has no EMA state")
        kwargs = dict(call_kwargs or {}, bins=bins, **hyper)
        if stateful:
            kwargs["momentum"] = momentum
        run = gradient_of(kwargs)
        target_device = None if device is None else jax.devices(device)[0]
        carried = {"state": None}

        def step(pred, target, lw=None):
            n_valid = max(int(np.sum(lw > 0)) if lw is not None else pred.size, 1)
            if targets == "class_index":
                target, lw = class_indices(target, lw)
            elif weights == "per_anchor" and lw is not None:
                lw = lw[..., 0].copy()
            x, t, w = jax.device_put((pred, target, lw), target_device)
            (loss, carried["state"]), grad = run(x, t, w, carried["state"], float(n_valid))
            return np.asarray(loss), np.asarray(grad)

        return step

    return _declare(make_port, label_weight=label_weight, targets=targets, weights=weights, framework="jax")


def reference_port(loss_kind: str, dialect: str) -> PortFactory:
    """The reference itself as a port: the catalogue must pass against it (its own proof)."""
    from reference import ghm_c, ghm_r

    fn = ghm_c if loss_kind == "c" else ghm_r

    def make_port(*, bins, momentum, **hyper):
        state = None

        def step(pred, target, label_weight):
            nonlocal state
            r = fn(pred, target, label_weight, bins=bins, momentum=momentum, state=state, dialect=dialect, **hyper)
            state = r.state
            return r.loss, r.grad

        return step

    return make_port
