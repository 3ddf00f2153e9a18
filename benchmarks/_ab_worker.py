"""One side of ``python -m benchmarks.compare``: a process that imports the losses of one checkout
and times them when told to. Run as a script (never imported by the package):

    python benchmarks/_ab_worker.py CODE_ROOT

``CODE_ROOT`` is the checkout whose ``impl_torch`` / ``impl_tf`` / ``impl_jax`` are timed; what is
timed (inputs, baselines, runners) is ``impls.py`` beside this file, the comparing tree's, so that
both sides run the same harness. Requests arrive on stdin and replies leave on the original stdout,
one JSON object a line; anything a library prints goes to stderr. Between requests the process
blocks on stdin, so the other side has the CPU to itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

HARNESS = Path(__file__).resolve().parent / "impls.py"
MODULES = {"torch": "impl_torch", "tf": "impl_tf", "jax": "impl_jax"}


def _load_harness():
    spec = importlib.util.spec_from_file_location("_ab_impls", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Side:
    def __init__(self, root: Path):
        self.root = root
        self.impls = _load_harness()
        self.runners: dict = {}

    def setup(
        self,
        framework: str,
        mode: str,
        loss: str,
        entries: int,
        bins: int,
        momentum: float,
        dialect: str,
        baseline: str,
    ) -> dict:
        impls = self.impls
        module = __import__(MODULES[framework])
        where = Path(module.__file__).resolve()
        if self.root not in where.parents:
            raise RuntimeError(f"{MODULES[framework]} was imported from {where}, not from {self.root}")
        cfg = impls.Config(loss, entries, bins, momentum, dialect)
        losses = {"torch": impls.torch_losses, "tf": impls.tf_losses, "jax": impls.jax_losses}[framework](cfg)
        runner = {"torch": impls.torch_runner, "tf": impls.tf_runner, "jax": impls.jax_runner}[framework]
        compiled = mode in ("compiled", "XLA", "jit")
        if framework == "torch" and compiled:
            import torch

            torch._dynamo.reset()
        ghm = next(name for name in losses if name.startswith("GHM"))
        data = impls.arrays(cfg)
        self.runners = {
            "ghm": runner(losses[ghm], data, "cpu", compiled),
            "plain": runner(losses[baseline], data, "cpu", compiled),
        }
        for run in self.runners.values():  # warm-up: compilation, allocator, page faults
            run()
            run()
        return {"ghm": ghm, "plain": baseline, "imported": str(where), "versions": _versions(framework)}

    def measure(self, reps: int) -> dict:
        """``reps`` forward + backward passes of each, interleaved (GHM, plain, GHM, plain, ...)."""
        times = {name: [] for name in self.runners}
        for _ in range(reps):
            for name, run in self.runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        return {"ghm": statistics.median(times["ghm"]), "plain": statistics.median(times["plain"])}


def _versions(framework: str) -> str:
    if framework == "torch":
        import torch

        return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if framework == "tf":
        import tensorflow as tf

        return f"TensorFlow {tf.__version__}"
    import jax

    return f"JAX {jax.__version__}"


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    # this script's folder (benchmarks/) must not shadow anything; the checkout comes first
    sys.path[:] = [str(root)] + [p for p in sys.path[1:] if Path(p or ".").resolve() != root]
    os.chdir(root)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of the libraries go to stderr, not into the replies
    side = Side(root)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                break
            if request["cmd"] == "setup":
                reply = side.setup(**request["args"])
            else:
                reply = side.measure(request["reps"])
            reply["ok"] = True
        except Exception as exc:  # noqa: BLE001 - reported to the comparing process, which says which side failed
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
