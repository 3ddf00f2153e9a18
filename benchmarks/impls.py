"""What the benchmark times: one forward + backward of a loss on prepared inputs, per framework
and mode, for the GHM losses and their baselines (plain losses, the official-style loop)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MU = 0.02
COLUMNS = {"c": 80, "r": 4}  # classes per anchor (GHM-C), box coordinates (GHM-R)


@dataclass(frozen=True)
class Config:
    loss_kind: str  # "c" or "r"
    entries: int
    bins: int
    momentum: float
    dialect: str = "mmdet"


def arrays(cfg: Config, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dense detector's batch: logits biased negative with 2% positives (GHM-C), or small box
    residuals (GHM-R); label weights given, all 1."""
    rng = np.random.default_rng(seed)
    cols = COLUMNS[cfg.loss_kind]
    rows = max(cfg.entries // cols, 1)
    if cfg.loss_kind == "c":
        pred = (rng.normal(size=(rows, cols)) * 3 - 2).astype(np.float32)
        target = (rng.random((rows, cols)) < 0.02).astype(np.float32)
    else:
        target = (rng.normal(size=(rows, cols)) * 0.1).astype(np.float32)
        pred = target + (rng.normal(size=(rows, cols)) * 0.05).astype(np.float32)
    return pred, target, np.ones_like(pred)


# ---------------------------------------------------------------- torch


def official_loop_c(pred, target, label_weight, bins: int = 30):
    """The official code's structure (mmdetection GHMC, no momentum): a Python loop over regions,
    a host sync per region and for ``tot``. Written here only as the baseline to time."""
    import torch
    import torch.nn.functional as F

    edges = torch.arange(bins + 1, device=pred.device).float() / bins
    edges[-1] += 1e-6
    weights = torch.zeros_like(pred)
    g = torch.abs(pred.sigmoid().detach() - target)
    valid = label_weight > 0
    tot = max(valid.float().sum().item(), 1.0)
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num_in_bin = inds.sum().item()
        if num_in_bin > 0:
            weights[inds] = tot / num_in_bin
            n += 1
    if n > 0:
        weights = weights / n
    return F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum") / tot


def official_loop_r(pred, target, label_weight, bins: int = 10, mu: float = MU):
    """mmdetection GHMR's structure (no momentum), likewise only a baseline."""
    import torch

    edges = torch.arange(bins + 1, device=pred.device).float() / bins
    edges[-1] = 1e3
    diff = pred - target
    loss = torch.sqrt(diff * diff + mu * mu) - mu
    g = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
    weights = torch.zeros_like(g)
    valid = label_weight > 0
    tot = max(label_weight.float().sum().item(), 1.0)
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num_in_bin = inds.sum().item()
        if num_in_bin > 0:
            n += 1
            weights[inds] = tot / num_in_bin
    if n > 0:
        weights /= n
    return torch.sum(loss * weights) / tot


def torch_losses(cfg: Config) -> dict[str, Callable]:
    """name -> f(pred, target, label_weight) -> scalar loss, eager."""
    import torch
    import torch.nn.functional as F

    from impl_torch import GHMCLoss, GHMRLoss

    if cfg.loss_kind == "c":
        ghm = GHMCLoss(bins=cfg.bins, momentum=cfg.momentum, dialect=cfg.dialect)
        return {
            "GHM-C (impl_torch)": lambda x, t, w: ghm(x, t, w),
            "BCE": lambda x, t, w: F.binary_cross_entropy_with_logits(x, t),
            "BCE, label weights": lambda x, t, w: F.binary_cross_entropy_with_logits(x, t, w),
            "official loop": lambda x, t, w: official_loop_c(x, t, w, cfg.bins),
        }
    ghm = GHMRLoss(mu=MU, bins=cfg.bins, momentum=cfg.momentum, dialect=cfg.dialect)

    def asl1(x, t, w):
        d = x - t
        return (torch.sqrt(d * d + MU * MU) - MU).mean()

    return {
        "GHM-R (impl_torch)": lambda x, t, w: ghm(x, t, w),
        "ASL1": asl1,
        "smooth L1": lambda x, t, w: F.smooth_l1_loss(x, t, beta=1.0 / 9.0),
        "official loop": lambda x, t, w: official_loop_r(x, t, w, cfg.bins),
    }


def torch_runner(fn: Callable, arrays_, device: str, compiled: bool) -> Callable[[], float]:
    """One forward + backward (the loss's gradient w.r.t. pred), synchronised; returns the loss."""
    import torch

    pred, target, weight = (torch.as_tensor(a, device=device) for a in arrays_)
    call = torch.compile(fn, fullgraph=True) if compiled else fn

    def run() -> float:
        x = pred.detach().requires_grad_(True)
        loss = call(x, target, weight)
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return run


# ---------------------------------------------------------------- tensorflow


def tf_losses(cfg: Config) -> dict[str, Callable]:
    """name -> f(y_true, y_pred, label_weight) -> scalar loss."""
    import tensorflow as tf

    from impl_tf import GHMCLoss, GHMRLoss

    if cfg.loss_kind == "c":
        ghm = GHMCLoss(bins=cfg.bins, momentum=cfg.momentum, dialect=cfg.dialect)
        return {
            "GHM-C (impl_tf)": lambda t, x, w: ghm(t, x, w),
            "sigmoid CE": lambda t, x, w: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=x)),
        }
    ghm = GHMRLoss(mu=MU, bins=cfg.bins, momentum=cfg.momentum, dialect=cfg.dialect)

    def asl1(t, x, w):
        d = x - t
        return tf.reduce_mean(tf.sqrt(d * d + MU * MU) - MU)

    return {"GHM-R (impl_tf)": lambda t, x, w: ghm(t, x, w), "ASL1": asl1}


def tf_runner(fn: Callable, arrays_, device: str, compiled: bool) -> Callable[[], float]:
    import tensorflow as tf

    where = "/GPU:0" if device == "cuda" else "/CPU:0"
    with tf.device(where):
        pred, target, weight = (tf.constant(a) for a in arrays_)

    def step(x, t, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = fn(t, x, w)
        return loss, tape.gradient(loss, x)

    call = tf.function(step, jit_compile=True) if compiled else step

    def run() -> float:
        with tf.device(where):
            loss, grad = call(pred, target, weight)
        grad.numpy()  # wait for the result
        return loss

    return run


# ---------------------------------------------------------------- JAX


def jax_losses(cfg: Config) -> dict[str, Callable]:
    """name -> f(pred, target, label_weight, state) -> (scalar loss, new state); the plain losses
    carry no state (None)."""
    import jax
    import jax.numpy as jnp

    from impl_jax import ghm_c_loss, ghm_r_loss

    if cfg.loss_kind == "c":

        def ghm(x, t, w, s):
            return ghm_c_loss(x, t, w, bins=cfg.bins, momentum=cfg.momentum, state=s, dialect=cfg.dialect)

        def sigmoid_ce(x, t, w, s):  # optax.sigmoid_binary_cross_entropy's formula
            return jnp.mean(-t * jax.nn.log_sigmoid(x) - (1 - t) * jax.nn.log_sigmoid(-x)), s

        return {"GHM-C (impl_jax)": ghm, "sigmoid CE": sigmoid_ce}

    def ghm_r(x, t, w, s):
        return ghm_r_loss(x, t, w, mu=MU, bins=cfg.bins, momentum=cfg.momentum, state=s, dialect=cfg.dialect)

    def asl1(x, t, w, s):
        d = x - t
        return jnp.mean(jnp.sqrt(d * d + MU * MU) - MU), s

    return {"GHM-R (impl_jax)": ghm_r, "ASL1": asl1}


def jax_runner(fn: Callable, arrays_, device: str, compiled: bool) -> Callable[[], float]:
    """One (jitted) forward + backward, the EMA state carried from call to call (None at first: the
    loss starts a fresh one; the warm-up runs trace both); waits for the result."""
    import jax

    where = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    pred, target, weight = jax.device_put(arrays_, where)
    step = jax.value_and_grad(fn, has_aux=True)
    call = jax.jit(step) if compiled else step
    state = [None]

    def run() -> float:
        (loss, state[0]), grad = call(pred, target, weight, state[0])
        grad.block_until_ready()
        return loss

    return run
