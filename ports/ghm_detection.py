"""The original GHM-C and GHM-R of the paper's authors (libuyu/GHM_Detection, first commits):
plain classes with ``calc``; GHM-C marks an ignored entry by a target of -1 (``ignore_index``)
instead of a label weight; GHM-R takes a mask.

Source: libuyu/GHM_Detection @ 9473594cd61f39d49a60ed93c83e035e8ef854f7, loss/ghm_loss.py.
Download: ``git clone https://github.com/libuyu/GHM_Detection DIR/libuyu/GHM_Detection &&
git -C DIR/libuyu/GHM_Detection checkout 9473594``.

Load-time patches: none (it is written for torch 0.4; torch 2.x still runs it, with warnings for
``F.sigmoid`` and ``size_average``).
"""

import torch

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load
from .mmdet_2x import READS_MASKED

SOURCE = Source("libuyu/GHM_Detection", "9473594cd61f39d49a60ed93c83e035e8ef854f7", "loss/ghm_loss.py")


def _module():
    return load(SOURCE, module_name="ghm_detection_port.ghm_loss")


class _IgnoredAsMinusOne:
    """``calc(input, target)`` with target -1 on the entries the label weight masks, as the
    docstring of GHMC_Loss says ignored samples are marked."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, pred, target, label_weight):
        return self.loss.calc(pred, torch.where(label_weight > 0, target, torch.full_like(target, -1.0)))


ghmc = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _IgnoredAsMinusOne(_module().GHMC_Loss(bins=bins, momentum=momentum))
    )
)
ghmr = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMR_Loss(mu=mu, bins=bins, momentum=momentum).calc)
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMC_Loss",
            "ghmc",
            "c",
            "loss.calc(pred, target), target -1 = ignored",
            READS_MASKED,
            "the official semantics; the ignored entries' BCE (target -1) enters the sum times 0",
            wiring="as its docstring says: masked entries get target -1",
        ),
        PortEntry(
            "GHMR_Loss",
            "ghmr",
            "r",
            "loss.calc(pred, target, mask), all (N, 4)",
            READS_MASKED,
            "the official semantics (literal ASL1, tot = the mask's sum)",
        ),
    ],
)
