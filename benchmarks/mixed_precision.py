"""The gradient that reaches half-precision logits in mixed-precision training, against the
float64 reference on the same (dequantised) logits: GHM-C and GHM-R beside the plain loss of
each (BCE, ASL1) in the same setup, which is the level a loss can reach there (spec.md 8).

    python -m benchmarks.mixed_precision                 # 2e6 entries (GHM-C), 4e5 (GHM-R)
    python -m benchmarks.mixed_precision --entries 1000000 --frameworks torch

Setups, as training runs them:

- torch, float16 logits, the loss multiplied by a loss scale of 2^15 or 2^16 before backward
  (what GradScaler does), the plain loss run in float32 on them (what autocast does for BCE);
- torch, a small model under ``autocast`` (CPU: bfloat16; CUDA: float16) with ``GradScaler``;
- tf, float16 logits and a loss scale of 2^15 or 2^16 under a GradientTape;
- Keras ``mixed_float16``: a model whose float16 output is the logits, trained by ``fit`` with a
  ``LossScaleOptimizer`` (initial scale 2^15); its inner optimizer records the unscaled gradient;
- JAX, float16 logits, ``jax.jit(jax.grad)`` of the loss times a loss scale of 2^15 or 2^16 (what
  a dynamic loss scale wrapper around an optax update does), the plain loss in float32.

For each: the L1 error of the unscaled gradient relative to the reference's L1 norm, the share
of the entries whose nonzero reference gradient came back as 0 (flushed), and the number of
non-finite gradient entries. Prints a Markdown table, one row per setup.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BINS = {"c": 30, "r": 10}
MU = 0.02
DIALECT = "mmdet"
SCALES = (2.0**15, 2.0**16)
COLUMNS = {"c": 80, "r": 4}


@dataclass
class GradientError:
    setup: str
    loss: str  # "GHM-C", "BCE", "GHM-R", "ASL1"
    l1: float  # sum |got - want| / sum |want|
    flushed: float  # share of the entries with a nonzero reference gradient that came back 0
    nonfinite: int


def compare(setup: str, loss: str, got: np.ndarray, want: np.ndarray) -> GradientError:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    finite = np.isfinite(got)
    nonzero = want != 0
    l1 = float(np.sum(np.abs(np.where(finite, got, 0.0) - want)) / np.sum(np.abs(want)))
    flushed = float(np.sum(nonzero & (got == 0)) / max(int(nonzero.sum()), 1))
    return GradientError(setup, loss, l1 if finite.all() else float("inf"), flushed, int((~finite).sum()))


def reference_gradient(kind: str, plain: bool, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d loss / d pred of the "mean" loss in float64, on the logits as the loss received them."""
    import reference
    from reference import equations as eq

    x, t = pred.astype(np.float64), target.astype(np.float64)
    if plain:  # beta = 1: the mean BCE / ASL1
        d = eq.cross_entropy_grad(x, t) if kind == "c" else eq.asl1_grad(x - t, MU)
        return d / x.size
    if kind == "c":
        return reference.ghm_c(x, t, bins=BINS["c"], dialect=DIALECT).grad
    return reference.ghm_r(x, t, mu=MU, bins=BINS["r"], dialect=DIALECT).grad


def batch(kind: str, entries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a dense detector (biased negative, 1% positives), or box residuals."""
    rng = np.random.default_rng(seed)
    shape = (max(entries // COLUMNS[kind], 1), COLUMNS[kind])
    if kind == "c":
        return (rng.normal(size=shape) * 2 - 4).astype(np.float32), (rng.random(shape) < 0.01).astype(np.float32)
    target = (rng.normal(size=shape) * 0.2).astype(np.float32)
    return target + (rng.normal(size=shape) * 0.05).astype(np.float32), target


LOSS_NAMES = {("c", False): "GHM-C", ("c", True): "BCE", ("r", False): "GHM-R", ("r", True): "ASL1"}

# ---------------------------------------------------------------- torch


def _torch_loss(kind: str, plain: bool) -> Callable:
    import torch
    import torch.nn.functional as F

    from impl_torch import GHMCLoss, GHMRLoss

    if not plain:
        return (
            GHMCLoss(bins=BINS["c"], dialect=DIALECT)
            if kind == "c"
            else GHMRLoss(mu=MU, bins=BINS["r"], dialect=DIALECT)
        )
    if kind == "c":  # float32 on the half logits: what autocast runs BCE in
        return lambda x, t: F.binary_cross_entropy_with_logits(x.float(), t)
    return lambda x, t: (torch.sqrt((x.float() - t) ** 2 + MU * MU) - MU).mean()


def torch_scaled_half(kind: str, plain: bool, entries: int, scale: float) -> GradientError:
    """float16 logits; the loss times a loss scale before backward, the gradient divided after."""
    import torch

    pred, target = batch(kind, entries)
    x = torch.tensor(pred).half().requires_grad_(True)
    loss = _torch_loss(kind, plain)(x, torch.tensor(target))
    (loss * scale).backward()
    got = x.grad.double().numpy() / scale
    want = reference_gradient(kind, plain, x.detach().double().numpy(), target)
    return compare(f"torch float16 logits, loss scale 2^{int(np.log2(scale))}", LOSS_NAMES[kind, plain], got, want)


def torch_autocast(kind: str, plain: bool, entries: int, device: str = "cpu") -> GradientError:
    """A linear head under autocast (CPU bfloat16, CUDA float16) trained one step with GradScaler:
    the gradient reaching its half-precision output, unscaled."""
    import torch

    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    _, target = batch(kind, entries)
    rows, cols = target.shape
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(rows, 16, generator=gen).to(device)
    head = torch.nn.Linear(16, cols).to(device)
    with torch.no_grad():  # logits like a detector's: biased negative (GHM-C), residuals near 0 (GHM-R)
        head.weight.mul_(2.0 if kind == "c" else 0.1)
        head.bias.fill_(-4.0 if kind == "c" else 0.0)
    scaler = torch.amp.GradScaler(device, init_scale=SCALES[-1])
    t = torch.tensor(target, device=device)
    with torch.autocast(device, dtype=dtype):
        logits = head(feats)
        logits.retain_grad()
        loss = _torch_loss(kind, plain)(logits, t)
    scaler.scale(loss).backward()
    got = logits.grad.double().cpu().numpy() / scaler.get_scale()
    want = reference_gradient(kind, plain, logits.detach().double().cpu().numpy(), target)
    name = f"torch autocast {str(dtype).replace('torch.', '')} ({device}) + GradScaler 2^16"
    return compare(name, LOSS_NAMES[kind, plain], got, want)


# ---------------------------------------------------------------- tf / Keras


def _tf_loss(kind: str, plain: bool):
    import keras
    import tensorflow as tf

    from impl_tf import GHMCLoss, GHMRLoss

    if not plain:
        return (
            GHMCLoss(bins=BINS["c"], dialect=DIALECT)
            if kind == "c"
            else GHMRLoss(mu=MU, bins=BINS["r"], dialect=DIALECT)
        )
    if kind == "c":
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def asl1(y_true, y_pred):
        d = tf.cast(y_pred, tf.float32) - y_true
        return tf.reduce_mean(tf.sqrt(d * d + MU * MU) - MU)

    return asl1


def tf_scaled_half(kind: str, plain: bool, entries: int, scale: float) -> GradientError:
    import tensorflow as tf

    pred, target = batch(kind, entries)
    x = tf.cast(tf.constant(pred), tf.float16)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _tf_loss(kind, plain)(tf.constant(target), x)
        scaled = loss * scale
    got = tape.gradient(scaled, x).numpy().astype(np.float64) / scale
    want = reference_gradient(kind, plain, x.numpy().astype(np.float64), target)
    return compare(f"tf float16 logits, loss scale 2^{int(np.log2(scale))}", LOSS_NAMES[kind, plain], got, want)


def keras_mixed_float16_fit(kind: str, plain: bool, entries: int) -> GradientError:
    """model.fit under the mixed_float16 policy with a LossScaleOptimizer: the model's float16
    output is a variable's value (the logits), so the unscaled gradient the optimizer receives
    for that variable is the gradient that reached the logits. The inner optimizer records it
    (learning rate 0). A non-finite gradient makes LossScaleOptimizer skip the step: then
    nothing is recorded and the setup reports the whole gradient as non-finite."""
    import keras
    import tensorflow as tf

    pred, target = batch(kind, entries)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:

        class Logits(keras.layers.Layer):
            def build(self, input_shape):
                self.logits = self.add_weight(shape=pred.shape, initializer=keras.initializers.Constant(pred))

            def call(self, x):  # float16 under the policy; one row per input row
                return self.logits + tf.zeros_like(x[:, :1])

        class Recorder(keras.optimizers.SGD):
            def build(self, variables):
                super().build(variables)
                self.seen = [self.add_variable_from_reference(v, "seen") for v in variables]
                self.steps_applied = self.add_variable((), dtype="int64", initializer="zeros", name="steps_applied")

            def update_step(self, gradient, variable, learning_rate):
                self.seen[self._get_variable_index(variable)].assign(tf.cast(gradient, tf.float32))
                self.steps_applied.assign_add(1)

        inner = Recorder(learning_rate=0.0)
        optimizer = keras.optimizers.LossScaleOptimizer(inner, initial_scale=SCALES[0])
        model = keras.Sequential([keras.Input((1,)), Logits()])
        model.compile(optimizer=optimizer, loss=_tf_loss(kind, plain))
        model.fit(
            np.zeros((pred.shape[0], 1), np.float32),
            target,
            batch_size=pred.shape[0],
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        out = model(np.zeros((pred.shape[0], 1), np.float32))
        if int(inner.steps_applied.numpy()) == 0:  # the step was skipped: the gradient was not finite
            got = np.full(pred.shape, np.nan)
        else:
            got = inner.seen[0].numpy().astype(np.float64)
        want = reference_gradient(kind, plain, np.asarray(tf.cast(out, tf.float64)), target)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return compare("keras mixed_float16 fit + LossScaleOptimizer 2^15", LOSS_NAMES[kind, plain], got, want)


# ---------------------------------------------------------------- JAX


def _jax_loss(kind: str, plain: bool) -> Callable:
    import jax
    import jax.numpy as jnp

    from impl_jax import ghm_c_loss, ghm_r_loss

    if not plain:
        if kind == "c":
            return lambda x, t: ghm_c_loss(x, t, bins=BINS["c"], dialect=DIALECT)[0]
        return lambda x, t: ghm_r_loss(x, t, mu=MU, bins=BINS["r"], dialect=DIALECT)[0]
    if kind == "c":  # optax.sigmoid_binary_cross_entropy's formula, in float32
        return lambda x, t: jnp.mean(jax.nn.softplus(x.astype(jnp.float32)) - x.astype(jnp.float32) * t)
    return lambda x, t: jnp.mean(jnp.sqrt((x.astype(jnp.float32) - t) ** 2 + MU * MU) - MU)


def jax_scaled_half(kind: str, plain: bool, entries: int, scale: float) -> GradientError:
    import jax
    import jax.numpy as jnp

    pred, target = batch(kind, entries)
    x = jnp.asarray(pred).astype(jnp.float16)
    loss = _jax_loss(kind, plain)
    grad = jax.jit(jax.grad(lambda x, t: loss(x, t) * jnp.float32(scale)))(x, jnp.asarray(target))
    got = np.asarray(grad, np.float64) / scale
    want = reference_gradient(kind, plain, np.asarray(x, np.float64), target)
    return compare(f"jax float16 logits (jit), loss scale 2^{int(np.log2(scale))}", LOSS_NAMES[kind, plain], got, want)


# ---------------------------------------------------------------- the table


def setups(frameworks: tuple[str, ...], entries: dict[str, int]) -> Iterator[Callable[[], GradientError]]:
    """Every setup x loss, as zero-argument calls (each imports what it needs)."""
    for kind in ("c", "r"):
        n = entries[kind]
        for plain in (False, True):
            if "torch" in frameworks:
                for scale in SCALES:
                    yield lambda k=kind, p=plain, s=scale, n=n: torch_scaled_half(k, p, n, s)
                yield lambda k=kind, p=plain, n=n: torch_autocast(k, p, n, "cpu")
                if _cuda():
                    yield lambda k=kind, p=plain, n=n: torch_autocast(k, p, n, "cuda")
            if "tf" in frameworks:
                for scale in SCALES:
                    yield lambda k=kind, p=plain, s=scale, n=n: tf_scaled_half(k, p, n, s)
                yield lambda k=kind, p=plain, n=n: keras_mixed_float16_fit(k, p, n)
            if "jax" in frameworks:
                for scale in SCALES:
                    yield lambda k=kind, p=plain, s=scale, n=n: jax_scaled_half(k, p, n, s)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=2_000_000, help="GHM-C entries (GHM-R: a fifth of them)")
    ap.add_argument("--frameworks", nargs="+", default=["torch", "tf", "jax"], choices=["torch", "tf", "jax"])
    args = ap.parse_args(argv)
    entries = {"c": args.entries, "r": max(args.entries // 5, 4)}
    results = [run() for run in setups(tuple(args.frameworks), entries)]
    print(
        f"Gradient reaching half-precision logits vs the float64 reference ({entries['c']:,} GHM-C entries, "
        f"{entries['r']:,} GHM-R entries, {DIALECT} dialect, bins {BINS['c']} / {BINS['r']}): L1 error relative "
        f"to the reference's L1 norm; in brackets, the share of nonzero gradients flushed to 0 and the "
        f"non-finite ones.\n"
    )
    print(table(results))


def table(results: list[GradientError]) -> str:
    """One row per setup, the four losses side by side."""
    losses = ("GHM-C", "BCE", "GHM-R", "ASL1")
    by_setup: dict[str, dict[str, GradientError]] = {}
    for r in results:
        by_setup.setdefault(r.setup, {})[r.loss] = r

    def cell(r: GradientError | None) -> str:
        return "-" if r is None else f"{r.l1:.2e} ({r.flushed:.2%}, {r.nonfinite})"

    lines = ["| setup | " + " | ".join(losses) + " |", "| --- |" + " --- |" * len(losses)]
    lines += [f"| {setup} | " + " | ".join(cell(row.get(k)) for k in losses) + " |" for setup, row in by_setup.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
