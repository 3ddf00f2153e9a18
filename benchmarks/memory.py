"""Peak memory of one forward + backward, in this fresh process (run by ``python -m benchmarks``):

    python -m benchmarks.memory FRAMEWORK MODE IMPL LOSS ENTRIES BINS MOMENTUM DEVICE

prints {"peak_mb": ...}: on CUDA, torch.cuda.max_memory_allocated above the inputs; on CPU, the
rise of the resident set size during the call above its level just before (after two warm-up
runs, which include compilation, and after returning free pages to the system), sampled every
0.5 ms."""

import json
import sys
import threading
import time

from ghm_conformance.measure import _release_free_memory, _rss

from .impls import Config, arrays, jax_losses, jax_runner, tf_losses, tf_runner, torch_losses, torch_runner

RUNNERS = {"torch": (torch_losses, torch_runner), "tf": (tf_losses, tf_runner), "jax": (jax_losses, jax_runner)}


def main() -> None:
    framework, mode, name, loss_kind, entries, bins, momentum, device = sys.argv[1:9]
    cfg = Config(loss_kind, int(entries), int(bins), float(momentum))
    losses, runner = RUNNERS[framework]
    run = runner(losses(cfg)[name], arrays(cfg), device, mode in ("compiled", "XLA", "jit"))
    run()
    run()
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        print(json.dumps({"peak_mb": round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)}))
        return
    _release_free_memory()
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run()
    done.set()
    sampler.join()
    print(json.dumps({"peak_mb": round((peak[0] - base) / 2**20, 1)}))


if __name__ == "__main__":
    main()
