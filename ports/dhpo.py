"""DHPO/GHM_Loss.pytorch: the widely copied standalone GHM-C / GHM-R (no label weights). Regions
by ``floor(g * (bins - 0.0001))``; beta = N / (count * n) with n the non-empty regions; the
"alpha" EMA starts from the first call's counts and decays every region.

Source: DHPO/GHM_Loss.pytorch @ d7ddb226cffdc13b49fae4ac8725ed6c9947d985, GHM_loss.py.
Download: ``git clone https://github.com/DHPO/GHM_Loss.pytorch DIR/DHPO/GHM_Loss.pytorch``.

Load-time patches: none. Wiring: ``alpha`` is the kit's momentum (0: no EMA).
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("DHPO/GHM_Loss.pytorch", "d7ddb226cffdc13b49fae4ac8725ed6c9947d985", "GHM_loss.py")


def factories(source: Source, module_name: str) -> tuple[LazyFactory, LazyFactory]:
    """GHMC_Loss and GHMR_Loss of this code, wherever a copy of it lives: ``alpha`` is momentum."""

    def module():
        return load(source, module_name=module_name)

    return (
        LazyFactory(
            lambda: from_torch_module(lambda bins, momentum: module().GHMC_Loss(bins, momentum), label_weight=False)
        ),
        LazyFactory(
            lambda: from_torch_module(
                lambda bins, momentum, mu: module().GHMR_Loss(bins, momentum, mu), label_weight=False
            )
        ),
    )


ghmc, ghmr = factories(SOURCE, "dhpo_port.ghm_loss")

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
            "dialect: neither; fails: value, ema, scale",
            "regions by floor(g (M - 1e-4)): a g on an edge (pred = 0 gives g = 1/2) lands in the region below; the "
            "EMA starts from the first counts (paper) but divides by the non-empty regions (mmdet) of the "
            "decayed counts",
        ),
        PortEntry(
            "GHMR_Loss",
            "ghmr",
            "r",
            "module(x, target), no label weight",
            "dialect: neither; fails: value, ema",
            "regions by floor(g (M - 1e-4)): a gr just above an edge (by up to 1e-4 k / M^2) lands in the region "
            "below; the same mixed EMA",
        ),
    ],
    copies=("deepmodeling/Uni-Mol", "lei1993/CCKS_Task1", "shuxinyin/NLP-Loss-Pytorch", "wanglaotou/ssd_mbv2_fpn"),
)
