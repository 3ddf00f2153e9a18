"""Time and peak memory of one call at scale, for the port and for the bundled loss of the port's
own framework (torch for a torch port, Keras on TensorFlow for a TF port, impl_jax for a JAX port)
on the same input, so that a [bins, N] broadcast or a per-region host loop shows in the report.

Both are measured by the same function: a first call on a fresh instance (compilation and other
first-call costs, reported apart), then one call on another fresh instance, timed: the same code
measured this way gives the same number whichever side it is on.

Peak memory is the rise of the process's resident set size during the call above its level
just before (after returning the allocator's free pages to the system), sampled every half
millisecond from /proc/self/statm (Linux; "n/a" elsewhere).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .cases import Case
from .protocol import Clock, Port, call_step

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = "/proc/self/statm"


def _release_free_memory() -> None:
    """Give the allocator's free pages back to the system (glibc), so that the RSS before the call
    is low and the call's own temporaries show in its rise instead of reusing freed pages."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss() -> int | None:
    try:
        with open(_STATM) as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


@dataclass
class Measurement:
    name: str
    seconds: float  # one call of a fresh instance, after a first call on another instance
    peak_bytes: int | None  # None where RSS cannot be read
    entries: int = 0  # of the call measured
    first_seconds: float | None = None  # the first call (compilation, warm-up), on its own instance

    def as_dict(self) -> dict:
        mb = None if self.peak_bytes is None else round(self.peak_bytes / 2**20, 1)
        first = None if self.first_seconds is None else round(self.first_seconds, 4)
        return {
            "name": self.name,
            "seconds": round(self.seconds, 4),
            "first_call_seconds": first,
            "peak_mb": mb,
            "entries": self.entries,
        }


def measure(name: str, port: Port, case: Case) -> Measurement:
    """The case's first call on a fresh instance (its first-call cost: compilation, warm-up), then
    on another fresh instance, timed with its peak memory (instance creation not counted)."""
    call = case.calls[0]
    first = port.instance(bins=case.bins, momentum=case.momentum, **case.hyper)
    first_seconds = call_step(
        first,
        call.pred,
        call.target,
        call.label_weight,
        with_label_weight=port.label_weight,
        clock=Clock(port.clock.timeout),
    ).seconds
    del first
    step = port.instance(bins=case.bins, momentum=case.momentum, **case.hyper)
    _release_free_memory()
    base = _rss()
    peak = [base or 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            value = _rss()
            if value is not None and value > peak[0]:
                peak[0] = value
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = call_step(
            step,
            call.pred,
            call.target,
            call.label_weight,
            with_label_weight=port.label_weight,
            clock=Clock(port.clock.timeout),
        )
    finally:
        done.set()
        sampler.join()
    return Measurement(name, out.seconds, None if base is None else max(peak[0] - base, 0), call.size, first_seconds)


BASELINES = {  # the port's framework -> the bundled loss it is costed against, in order of preference
    "torch": ("torch",),
    "tf": ("tf",),
    "jax": ("jax",),
    None: ("torch", "tf", "jax"),
}


def bundled_measurement(
    case: Case, dialect: str, framework: str | None = None, label_weight: bool = True
) -> Measurement | None:
    """The bundled loss of the port's framework on the same input, measured as the port is (for a
    port of unknown framework: torch, tf or jax, the first importable); None if none is."""
    from .targets import BUNDLED, bundled_port

    for backend in BASELINES.get(framework, BASELINES[None]):
        try:
            __import__(BUNDLED[backend])
        except ImportError:
            continue
        name = {"torch": "impl_torch.GHM{}Loss", "tf": "impl_tf.GHM{}Loss", "jax": "impl_jax.ghm_{}_loss (jit)"}[
            backend
        ]
        name = name.format(case.loss_kind.upper() if backend != "jax" else case.loss_kind)
        return measure(name, Port(bundled_port(backend, case.loss_kind, dialect), label_weight=label_weight), case)
    return None
