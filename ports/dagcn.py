"""linguo123/DAGCN_behavior_recognition: DHPO's GHM loss "referenced" into a behaviour-recognition
model, with N = ``x.size(0)`` (the rows) instead of every entry in the weights of GHM_Loss.forward,
so the GHM-C loss is the DHPO loss divided by the number of columns, and ``print(beta[bin_idx])``
on every call.

Source: linguo123/DAGCN_behavior_recognition @ 7708072fb49053dd429f4a2a611fffa7c6a48abd,
GHM_loss.py. Download: ``git clone https://github.com/linguo123/DAGCN_behavior_recognition
DIR/linguo123/DAGCN_behavior_recognition && git -C DIR/linguo123/DAGCN_behavior_recognition checkout
7708072``.

Load-time patches: none. Wiring: ``alpha`` is the kit's momentum.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("linguo123/DAGCN_behavior_recognition", "7708072fb49053dd429f4a2a611fffa7c6a48abd", "GHM_loss.py")


def _module():
    return load(SOURCE, module_name="dagcn_port.GHM_loss")


ghmc = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum: _module().GHMC_Loss(bins, momentum), label_weight=False)
)
ghmr = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMR_Loss(bins, momentum, mu), label_weight=False)
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
            "module(x, target), no label weight",
            "dialect: neither; fails: value, ema, saturated, scale, uniform, one_region",
            "DHPO's regions (floor(g (M - 1e-4))) and mixed EMA, and N = the rows: the loss is divided by the "
            "number of columns",
        ),
        PortEntry(
            "GHMR_Loss",
            "ghmr",
            "r",
            "module(x, target), no label weight",
            "dialect: neither; fails: value, ema, saturated, uniform, one_region",
            "DHPO's GHM-R with N = the rows in the weights: the loss is divided by the number of columns",
        ),
    ],
)
