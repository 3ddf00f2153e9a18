"""miaoshuyu/object-detection-usages: ``GHMC_loss`` as a Zhihu blog post rewrote mmdetection 1.x's
loop (``use_sigmiod``, ``total``, ``num_in_bins``; the file cites the post), with one change that
matters: a region is ``edges[i] <= g <= edges[i+1]``, closed on the right, so a g exactly on an
inner edge k/M (pred = 0 gives g = 1/2) is counted in two regions, inflating both counts and the
number of non-empty regions, and is weighted by the upper one. Otherwise the official semantics
(tot = the valid entries, EMA from zeros in the non-empty regions). The same class was pasted
into other projects (``COPIES``; e.g. an HRNet segmentation criterion in Aaromxj/SrSeg).

Source: miaoshuyu/object-detection-usages @ 1d7d60e5c1030e3cc21e4ed2c030a173373c6e7e,
src/ghm_loss.py. Download: ``git clone https://github.com/miaoshuyu/object-detection-usages
DIR/miaoshuyu/object-detection-usages && git -C DIR/miaoshuyu/object-detection-usages checkout
1d7d60e``.

Load-time patches: none. Wiring: ``GHMC_loss(bins, momentum)`` called as ``loss(pred, target,
label_weight)``, all (N, C), as its ``__main__`` calls it.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("miaoshuyu/object-detection-usages", "1d7d60e5c1030e3cc21e4ed2c030a173373c6e7e", "src/ghm_loss.py")
COPIES = ("Aaromxj/SrSeg",)


def _module():
    return load(SOURCE, module_name="zhihu_ghmc_port.ghm_loss")


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _module().GHMC_loss(bins=bins, momentum=momentum)))

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMC_loss",
            "ghmc",
            "c",
            "module(pred, target, label_weight), all (N, C)",
            "dialect: mmdet except g exactly on a region edge; fails: value, ema, ema_empty, scale; notes: reads "
            "masked values (NaN/Inf there propagates)",
            "regions closed on the right (`g <= edges[i+1]`): a g exactly on an inner edge k/M (pred = 0 gives "
            "g = 1/2) is counted in two regions",
        ),
    ],
    copies=COPIES,
)
