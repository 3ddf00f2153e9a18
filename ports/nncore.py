"""yeliudev/nncore: the GHM-C of Ye Liu's neural-network core library (``nncore.nn.GHMCLoss``):
mmdetection's loop over the regions without label weights, edges and accumulator as buffers,
and ``tot = target.size(1)`` (the number of columns, not of entries), which cancels in
``sum(w_i L_i) / tot``. An earlier copy of the same code lived at nncore/nn/losses/ghm_loss.py.

Source: yeliudev/nncore @ 53107bfb06808d741c84d1f79abe4aeed81f33c9, nncore/nn/losses/ghm.py.
Download: ``git clone https://github.com/yeliudev/nncore DIR/yeliudev/nncore && git -C
DIR/yeliudev/nncore checkout 53107bf``.

Load-time patches: ``import nncore`` gets a stub whose ``bind_getter`` decorator returns the class
unchanged; ``from ..builder import LOSSES`` gets a registry stub (``register()`` returns the class).
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Registry, Source, load, stub

SOURCE = Source("yeliudev/nncore", "53107bfb06808d741c84d1f79abe4aeed81f33c9", "nncore/nn/losses/ghm.py")
PATCHES = (
    "`import nncore`: a stub whose bind_getter(...) returns the class unchanged",
    "`from ..builder import LOSSES`: a registry stub (register() returns the class)",
)


class _Losses(Registry):
    def register(self, *args, **kwargs):
        return self.register_module(*args, **kwargs)


def _module():
    nncore = stub("nncore", bind_getter=lambda *names: lambda cls: cls)
    return load(
        SOURCE,
        module_name="nncore_port.nn.losses.ghm",
        stubs={"nncore": nncore, "nncore_port.nn.builder": stub("nncore_port.nn.builder", LOSSES=_Losses())},
    )


ghmc = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _module().GHMCLoss(bins=bins, momentum=momentum), label_weight=False
    )
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    PATCHES,
    [
        PortEntry(
            "GHMCLoss",
            "ghmc",
            "c",
            "module(pred, target), no label weight",
            "conforms: mmdet",
            "the official semantics without label weights (tot = the number of columns, which cancels)",
        ),
    ],
)
