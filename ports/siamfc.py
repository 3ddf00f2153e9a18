"""huanglianghua/siamfc-pytorch: the GHM-C of a SiamFC tracker (response maps against 0/1 label
maps), written after the official loop: regions by ``edges[i] <= g < edges[i+1]`` (the last edge
+1e-6), tot = every entry, the EMA ``acc_sum`` from zeros updated in the non-empty regions, but
the weights normalised by their own mean (``weights /= weights.mean()``) instead of divided by
the number of non-empty regions. Without momentum the two agree (the mean of tot / count over
the entries is the number of non-empty regions); with it they do not.

Source: huanglianghua/siamfc-pytorch @ 39572051d7c3d9850ca6100efa04091e18c2f706, siamfc/losses.py.
Download: ``git clone https://github.com/huanglianghua/siamfc-pytorch DIR/huanglianghua/siamfc-pytorch
&& git -C DIR/huanglianghua/siamfc-pytorch checkout 3957205``.

Load-time patches: none. Wiring: ``GHMCLoss(bins, momentum)`` called as ``loss(input, target)``
(no label weight), as its tracker calls it on the response map. Copies of the file (siamfc/losses.py in
trackers built on it) are listed in ``COPIES``, counted once, here.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("huanglianghua/siamfc-pytorch", "39572051d7c3d9850ca6100efa04091e18c2f706", "siamfc/losses.py")


def _module():
    return load(SOURCE, module_name="siamfc_port.losses")


ghmc = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _module().GHMCLoss(bins=bins, momentum=momentum), label_weight=False
    )
)

COPIES = ("Kingzerd/siamfc_pytorch", "chandan047/RAT-Tracker", "dina-adel/siamfc-pytorch")

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMCLoss",
            "ghmc",
            "c",
            "module(input, target), no label weight",
            "dialect: mmdet (without momentum only); fails: ema",
            "the official semantics without momentum; with it the weights are divided by their mean, "
            "sum(count / acc_sum) over the regions, instead of by the number of non-empty regions",
        ),
    ],
    copies=COPIES,
)
