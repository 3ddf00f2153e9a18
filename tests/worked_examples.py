"""The worked examples of spec.md section 4.3, with their values derived by hand (each expected
value is a formula of the example's numbers, not a number copied from an implementation).
Used by the reference tests and by the loss tests of every backend."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOG2 = math.log(2)
CE5 = math.log1p(math.exp(-5.0))  # L_CE(5, 1) = L_CE(-5, 0)


def _asl1(d: float, mu: float) -> float:
    return math.sqrt(d * d + mu * mu) - mu


@dataclass(frozen=True)
class Worked:
    id: str
    kind: str  # "c" or "r"
    pred: np.ndarray
    target: np.ndarray
    hyper: dict
    paper: float
    mmdet: float
    why: str


WORKED = [
    Worked(
        "zeros-2x3-bins30",
        "c",
        np.zeros((2, 3)),
        np.zeros((2, 3)),
        {"bins": 30},
        LOG2 / 30,
        LOG2,
        "p = 1/2 exactly, g = 1/2: all 6 entries in region 15 of 30; paper beta = 6 / (6 * 30), mmdet n = 1",
    ),
    Worked(
        "five-minus-five-bins2",
        "c",
        np.array([5.0, -5.0]),
        np.array([1.0, 0.0]),
        {"bins": 2},
        CE5 / 2,
        CE5,
        "g = sigmoid(-5) = 0.0067 for both: region 0 of 2; paper beta = 2 / (2 * 2), mmdet n = 1",
    ),
    Worked(
        "ghm-r-two-far-residuals",
        "r",
        np.array([5.0, -5.0]),
        np.array([1.0, 0.0]),
        {"bins": 10, "mu": 0.02},
        0.1 * (_asl1(4.0, 0.02) + _asl1(5.0, 0.02)) / 2,
        (_asl1(4.0, 0.02) + _asl1(5.0, 0.02)) / 2,
        "d = 4 and -5: gr > 0.9999, both in region 9 of 10; paper beta = 2 / (2 * 10), mmdet n = 1",
    ),
]
