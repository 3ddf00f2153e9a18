"""Ports that misbehave as programs, for the CLI tests: they exit, hang, print, interrupt."""

import sys
import time

import numpy as np

from zoo import make_zoo_port

_good = make_zoo_port("c", "mmdet")


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


ghm_r_port = make_zoo_port("r", "mmdet")


def ghm_r_with_default_mu(*, bins, momentum, mu=0.02, **hyper):
    return ghm_r_port(bins=bins, momentum=momentum, mu=mu)


def ghm_c_rejecting_mu(*, bins, momentum):
    return _good(bins=bins, momentum=momentum)


__all__ = ["exits", "slow", "chatty", "interrupts", "ghm_r_port", "ghm_r_with_default_mu", "ghm_c_rejecting_mu",
           "np"]
