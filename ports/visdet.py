"""BinItAI/visdet: mmdetection's GHMC and GHMR rewritten for a typed, registry-based detection
library (derived from mmdetection's file): per-entry targets only (no class-index expansion), an
optional label weight (GHM-C without one counts ``target >= 0``), and GHM-R's ``tot`` the count of
valid entries instead of the sum of the label weights (it cancels either way).

Source: BinItAI/visdet @ 3e0da4271acbf89eedce85d4865dc2b42df676d9, visdet/models/losses/ghm_loss.py.
Download: ``git clone https://github.com/BinItAI/visdet DIR/BinItAI/visdet && git -C
DIR/BinItAI/visdet checkout 3e0da42``.

Load-time patch: ``from visdet.registry import MODELS`` gets a registry stub.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Registry, Source, load, stub
from .mmdet_2x import READS_MASKED

SOURCE = Source("BinItAI/visdet", "3e0da4271acbf89eedce85d4865dc2b42df676d9", "visdet/models/losses/ghm_loss.py")
PATCHES = ("`from visdet.registry import MODELS`: a registry stub (register_module returns the class)",)


def _module():
    return load(
        SOURCE,
        module_name="visdet_port.ghm_loss",
        stubs={"visdet": stub("visdet"), "visdet.registry": stub("visdet.registry", MODELS=Registry())},
    )


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum)))
ghmr = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMR(mu=mu, bins=bins, momentum=momentum))
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    PATCHES,
    [
        PortEntry(
            "GHMC",
            "ghmc",
            "c",
            "module(pred, target, label_weight), all (N, C)",
            READS_MASKED,
            "the official semantics; a NaN held by a masked anchor reaches the sum (0 * NaN)",
        ),
        PortEntry(
            "GHMR",
            "ghmr",
            "r",
            "module(pred, target, label_weight), all (N, 4)",
            READS_MASKED,
            "the official semantics (literal ASL1, tot = the valid count)",
        ),
    ],
)
