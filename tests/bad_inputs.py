"""The bad hyper-parameters of spec.md section 7, once: the reference and both fast losses must
reject each with a ValueError naming the argument."""

import math

BAD_HYPER = [  # (keyword arguments, the name the message must contain)
    (dict(bins=0), "bins"),
    (dict(bins=2.5), "bins"),
    (dict(bins=True), "bins"),
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(momentum=math.nan), "momentum"),
    (dict(dialect="mmdetection"), "dialect"),
    (dict(reduction="avg"), "reduction"),
    (dict(loss_weight=math.inf), "loss_weight"),
    (dict(loss_weight=math.nan), "loss_weight"),
]
BAD_MU = [0.0, -1.0, math.nan, math.inf]  # rejected everywhere; the fast losses also reject [1e-30, 1e30]'s outside
