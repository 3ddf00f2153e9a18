"""Ports that misbehave as programs, for the CLI tests: they exit, hang, print, interrupt."""

import sys
import time

import numpy as np

from zoo import BinaryTargets, MasksFirst, port

_good = port(MasksFirst)


def exits(*, bins, momentum, **hyper):
    step = _good(bins=bins, momentum=momentum, **hyper)

    def run(pred, target, label_weight):
        if pred.size > 3:
            sys.exit(0)  # a port must never end the run as a success
        return step(pred, target, label_weight)

    return run


def slow(*, bins, momentum, **hyper):
    step = _good(bins=bins, momentum=momentum, **hyper)
    calls = [0]

    def run(pred, target, label_weight):
        calls[0] += 1
        if calls[0] > 1:
            time.sleep(1.0)
        return step(pred, target, label_weight)

    return run


def chatty(*, bins, momentum, **hyper):
    step = _good(bins=bins, momentum=momentum, **hyper)

    def run(pred, target, label_weight):
        print("hello from the port")
        return step(pred, target, label_weight)

    return run


def interrupts(*, bins, momentum, **hyper):
    def run(pred, target, label_weight):
        raise KeyboardInterrupt

    return run


ghm_r_port = port(MasksFirst, loss="r")


def ghm_r_with_default_mu(*, bins, momentum, mu=0.02, **hyper):
    return ghm_r_port(bins=bins, momentum=momentum, mu=mu)


def ghm_c_rejecting_mu(*, bins, momentum):
    return _good(bins=bins, momentum=momentum)


def ghm_c_that_looks_like_ghm_r(*, bins, momentum, **hyper):
    """A faulty GHM-C port (soft targets read as 0/1) whose probe value happens to lie nearer the
    GHM-R reference: it must be judged (and fail), never refused as a usage error."""
    step = port(BinaryTargets)(bins=bins, momentum=momentum, **hyper)
    probe = np.array([[0.5, -1.0, 2.0, 0.1]], np.float32)

    def run(pred, target, label_weight):
        loss, grad = step(pred, target, label_weight)
        if pred.shape == probe.shape and np.array_equal(pred, probe):
            import reference

            return reference.ghm_r(pred, target, bins=bins).loss, grad
        return loss, grad

    return run


def nan_gradient(*, bins, momentum, **hyper):
    """Right losses, a NaN gradient: finite_diff must fail it (NaN > tolerance is False)."""
    step = _good(bins=bins, momentum=momentum, **hyper)

    def run(pred, target, label_weight):
        loss, grad = step(pred, target, label_weight)
        return loss, np.full_like(grad, np.nan)

    return run


__all__ = [
    "chatty",
    "exits",
    "ghm_c_rejecting_mu",
    "ghm_c_that_looks_like_ghm_r",
    "ghm_r_port",
    "ghm_r_with_default_mu",
    "interrupts",
    "nan_gradient",
    "np",
    "slow",
]
