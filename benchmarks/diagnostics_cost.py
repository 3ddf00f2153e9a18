"""What diagnostics=True costs (spec.md 13): forward + backward of GHM-C and GHM-R with the
diagnostics off and on, per framework and mode, on a detector-sized call (20,736 anchors x 80
classes for GHM-C, 20,736 x 4 box coordinates for GHM-R, a fifth of the anchors masked).

    python -m benchmarks.diagnostics_cost              # torch eager/compiled, tf eager/XLA, jax jit
    python -m benchmarks.diagnostics_cost --only torch --repeats 20

Each time is the median of ``--repeats`` runs after two warm-up runs (compilation included),
the off and on runs interleaved; the table prints the ratio on / off.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

ANCHORS, CLASSES = 20_736, 80


def _inputs(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    cols = CLASSES if kind == "c" else 4
    x = (rng.normal(size=(ANCHORS, cols)) * 3 - (4 if kind == "c" else 0)).astype(np.float32)
    t = (
        (rng.random((ANCHORS, cols)) < 0.002).astype(np.float32)
        if kind == "c"
        else (x + rng.normal(size=(ANCHORS, cols)) * 0.1).astype(np.float32)
    )
    w = (rng.random(ANCHORS) < 0.8).astype(np.float32)
    return x, t, w


def _torch(kind: str, compiled: bool):
    import torch

    from impl_torch import GHMCLoss, GHMRLoss

    x, t, w = (torch.tensor(a) for a in _inputs(kind))
    runs = {}
    for on in (False, True):
        loss = (
            GHMCLoss(bins=30, momentum=0.75, diagnostics=on)
            if kind == "c"
            else GHMRLoss(bins=10, momentum=0.7, diagnostics=on)
        )
        fn = torch.compile(loss, fullgraph=True) if compiled else loss

        def run(fn=fn):
            p = x.clone().requires_grad_(True)
            fn(p, t, w).backward()

        runs[on] = run
    return runs


def _tf(kind: str, xla: bool):
    import tensorflow as tf

    import impl_tf

    x, t, w = (tf.constant(a) for a in _inputs(kind))
    runs = {}
    for on in (False, True):
        loss = (
            impl_tf.GHMCLoss(bins=30, momentum=0.75, diagnostics=on)
            if kind == "c"
            else impl_tf.GHMRLoss(bins=10, momentum=0.7, diagnostics=on)
        )

        def step(x, t, w, loss=loss):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(t, x, w)
            return tape.gradient(value, x)

        fn = tf.function(step, jit_compile=True) if xla else step
        runs[on] = lambda fn=fn: fn(x, t, w).numpy()
    return runs


def _jax(kind: str):
    import jax

    from impl_jax import ghm_c_loss, ghm_r_loss, init_state

    x, t, w = (jax.device_put(a) for a in _inputs(kind))
    fn, bins, momentum = (ghm_c_loss, 30, 0.75) if kind == "c" else (ghm_r_loss, 10, 0.7)
    runs = {}
    for on in (False, True):

        @jax.jit
        def step(x, state, on=on):
            return jax.value_and_grad(
                lambda p: (lambda out: (out[0], out[1:]))(
                    fn(p, t, w, bins=bins, momentum=momentum, state=state, diagnostics=on)
                ),
                has_aux=True,
            )(x)

        state = init_state(bins)
        runs[on] = lambda step=step, state=state: jax.block_until_ready(step(x, state))
    return runs


def median_times(runs: dict, repeats: int) -> dict:
    for run in runs.values():
        run()
        run()
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            start = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["torch", "tf", "jax"], action="append")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    frameworks = args.only or ["torch", "tf", "jax"]
    groups = []
    if "torch" in frameworks:
        groups += [("torch", "eager", lambda k: _torch(k, False)), ("torch", "compiled", lambda k: _torch(k, True))]
    if "tf" in frameworks:
        groups += [("tf", "eager", lambda k: _tf(k, False)), ("tf", "XLA", lambda k: _tf(k, True))]
    if "jax" in frameworks:
        groups += [("jax", "jit", _jax)]
    print(
        f"# diagnostics on vs off, forward + backward, median of {args.repeats} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)\n"
    )
    print("| loss | framework | mode | off (ms) | on (ms) | on / off |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for kind in ("c", "r"):
        for framework, mode, make in groups:
            t = median_times(make(kind), args.repeats)
            print(
                f"| GHM-{kind.upper()} | {framework} | {mode} | {t[False] * 1e3:.2f} | {t[True] * 1e3:.2f} | "
                f"{t[True] / t[False]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
