"""The GHM-C and GHM-R of the paper's authors inside their mmdetection v0.6 tree
(libuyu/GHM_Detection at the commit that completed its training code): classes with
``calc(input, target, mask)``, edges as Python floats, accumulators as Python lists.

Source: libuyu/GHM_Detection @ 3647287710416c91077805d504349fb947c2e9bd,
mmdetection/mmdet/core/loss/ghm_loss.py. Download: ``git clone
https://github.com/libuyu/GHM_Detection DIR/libuyu/GHM_Detection && git -C
DIR/libuyu/GHM_Detection checkout 3647287``.

Load-time patches: none.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load
from .mmdet_2x import READS_MASKED

SOURCE = Source(
    "libuyu/GHM_Detection", "3647287710416c91077805d504349fb947c2e9bd", "mmdetection/mmdet/core/loss/ghm_loss.py"
)


def _module():
    return load(SOURCE, module_name="ghm_detection_mmdet_port.ghm_loss")


ghmc = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum: _module().GHMC_Loss(bins=bins, momentum=momentum).calc)
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
            "loss.calc(pred, target, mask), all (N, C)",
            READS_MASKED,
            "the official semantics; a NaN held by a masked anchor reaches the sum (0 * NaN)",
        ),
        PortEntry(
            "GHMR_Loss",
            "ghmr",
            "r",
            "loss.calc(pred, target, mask), all (N, 4)",
            READS_MASKED,
            "the official semantics (literal ASL1)",
        ),
    ],
)
