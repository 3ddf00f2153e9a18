"""Time and peak memory of one call at scale, for the port and for the bundled loss on the same
input, so that a [bins, N] broadcast or a per-region host loop shows in the report.

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
    seconds: float
    peak_bytes: int | None  # None where RSS cannot be read
    entries: int = 0  # of the call measured

    def as_dict(self) -> dict:
        mb = None if self.peak_bytes is None else round(self.peak_bytes / 2 ** 20, 1)
        return {"name": self.name, "seconds": round(self.seconds, 4), "peak_mb": mb, "entries": self.entries}


def measure(name: str, port: Port, case: Case) -> Measurement:
    """One call of a fresh instance on the case's first call (instance creation not counted)."""
    call = case.calls[0]
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
        out = call_step(step, call.pred, call.target, call.label_weight, with_label_weight=port.label_weight,
                        clock=Clock(port.clock.timeout))
    finally:
        done.set()
        sampler.join()
    return Measurement(name, out.seconds, None if base is None else max(peak[0] - base, 0), call.size)


def bundled_measurement(case: Case, dialect: str) -> Measurement | None:
    """The bundled loss on the same input (torch if importable, else tf), or None."""
    from .targets import bundled_port

    for backend, module, cls in (("torch", "impl_torch", "GHMCLoss"), ("tf", "impl_tf", "GHMCLoss")):
        try:
            __import__(module)
        except ImportError:
            continue
        cls = cls if case.loss_kind == "c" else cls.replace("C", "R", 1)
        port = Port(bundled_port(backend, case.loss_kind, dialect))
        measure(f"{module}.{cls}", port, case)  # warm-up: first-call costs are not the loss's
        return measure(f"{module}.{cls}", port, case)
    return None
