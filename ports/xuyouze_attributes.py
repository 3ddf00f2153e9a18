"""xuyouze/lLossServer88_jrq: "a multi-attribute implementation of ghm-c loss" (face-attribute
recognition, one sigmoid output per attribute): the official loop run per column, each attribute
with its own histogram and its own EMA row ``acc_sum[j]`` (from zeros, updated in the non-empty
regions), weights N / acc_sum[j, i] divided by the number of non-empty regions of that column,
the loss the mean of the weighted BCE over every entry. Bins and momentum are hard-coded in its
``__init__`` (30 and 0.6); its momentum-0 branch indexes ``weights[idxs[:i], j]`` (the first i
rows of the region mask, not the mask), which raises.

Source: xuyouze/lLossServer88_jrq @ 320358952f467d4ebb429aea9e38e5a24e907120, loss/ghmc_loss.py.
Download: ``git clone https://github.com/xuyouze/lLossServer88_jrq DIR/xuyouze/lLossServer88_jrq
&& git -C DIR/xuyouze/lLossServer88_jrq checkout 3203589``.

Load-time patches: ``from config import TrainConfig`` and ``from loss.registry import Loss`` get
stubs (a config class; a registry whose ``register(name)`` returns the class). Wiring: the loss is
built on the first call with ``config.dataset_config.attribute_num`` = the number of columns, and
its hard-coded bins and momentum are replaced by the kit's, set as its ``__init__`` sets them
(``bins``, ``momentum``, ``edges`` with the last edge +1e-6, ``acc_sum`` of zeros when momentum
> 0); called as ``loss(pred, target)``, no label weight.
"""

import types

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load, stub

SOURCE = Source("xuyouze/lLossServer88_jrq", "320358952f467d4ebb429aea9e38e5a24e907120", "loss/ghmc_loss.py")
PATCHES = (
    "`from config import TrainConfig`: a stub class",
    "`from loss.registry import Loss`: a registry stub (register(name) returns the class)",
)


class _Registry:
    @staticmethod
    def register(name):
        return lambda cls: cls


def _module():
    return load(
        SOURCE,
        module_name="xuyouze_port.ghmc_loss",
        stubs={
            "config": stub("config", TrainConfig=type("TrainConfig", (), {})),
            "loss": stub("loss"),
            "loss.registry": stub("loss.registry", Loss=_Registry),
        },
    )


class _PerAttribute:
    """Built on the first call (the attribute count is the number of columns), with the kit's
    bins and momentum in place of the hard-coded ones."""

    def __init__(self, bins, momentum):
        self.bins, self.momentum, self.loss = bins, momentum, None

    def __call__(self, pred, target):
        if self.loss is None:
            import torch

            config = types.SimpleNamespace(dataset_config=types.SimpleNamespace(attribute_num=pred.shape[-1]))
            loss = _module().GHMCLoss(config)
            loss.bins, loss.momentum = self.bins, self.momentum
            loss.edges = [float(x) / self.bins for x in range(self.bins + 1)]
            loss.edges[-1] += 1e-6
            if self.momentum > 0:
                loss.acc_sum = torch.zeros((pred.shape[-1], self.bins))
            self.loss = loss
        return self.loss(pred, target)


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _PerAttribute(bins, momentum), label_weight=False))

ADAPTER = Adapter(
    SOURCE,
    "torch",
    PATCHES,
    [
        PortEntry(
            "GHMCLoss (per attribute)",
            "ghmc",
            "c",
            "module(pred, target), no label weight",
            "dialect: neither; fails: value, ema, independent_instances, saturated, scale, uniform, one_region, "
            "permutation, duplication, finite_diff",
            "without momentum it raises IndexError (`weights[idxs[:i], j]`); with momentum each column (attribute) "
            "has its own histogram and EMA row, sized when it is built, so a call with more columns raises too "
            "(the EMA properties fail on that)",
            wiring="with the kit's bins and momentum",
        ),
    ],
)
