"""mmdetection 1.x GHMC and GHMR, as the CARAFE repository (an mmdetection v1 tree) keeps them:
the official code with labels 1..C and 0 = background (``_expand_binary_labels``), the registry
decorator without parentheses, and ``.cuda()`` on the edges and accumulators in ``__init__``, so
that the losses cannot even be constructed on a machine without a GPU.

Source: leftthomas/CARAFE @ 477a6b890d9de389138f9ebeace4cb67be0dcd4d, mmdet/models/losses/ghm_loss.py
(mmdetection v1.0's file). Download: ``git clone https://github.com/leftthomas/CARAFE
DIR/leftthomas/CARAFE && git -C DIR/leftthomas/CARAFE checkout 477a6b8``.

Load-time patches: ``from ..registry import LOSSES`` gets a registry stub; ``Tensor.cuda()`` is a
no-op while a loss is constructed (this machine has no GPU; on one the code runs unpatched).
Wiring, as v1's heads call GHMC: labels (N,) with 0 = background and classes 1..C (the kit's class
C is passed as 0, class c as c + 1), per-anchor weights (N,).
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Registry, Source, cuda_is_a_no_op, load, stub
from .mmdet_2x import READS_MASKED

SOURCE = Source("leftthomas/CARAFE", "477a6b890d9de389138f9ebeace4cb67be0dcd4d", "mmdet/models/losses/ghm_loss.py")
PATCHES = (
    "`from ..registry import LOSSES`: a registry stub (register_module returns the class)",
    "`.cuda()` in __init__: Tensor.cuda is a no-op while the loss is constructed (no GPU here)",
)


def _module():
    return load(
        SOURCE,
        module_name="mmdet1_port.models.losses.ghm_loss",
        stubs={"mmdet1_port.models.registry": stub("mmdet1_port.models.registry", LOSSES=Registry())},
    )


def _build(cls_name, **kw):
    with cuda_is_a_no_op():
        return getattr(_module(), cls_name)(**kw)


class _Version1Labels:
    """labels (N,) with C = background -> v1's labels with 0 = background, classes 1..C."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, pred, labels, weights):
        c = pred.shape[-1]
        return self.loss(pred, (labels + 1) % (c + 1), weights)


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _build("GHMC", bins=bins, momentum=momentum)))
ghmc_class_index = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _Version1Labels(_build("GHMC", bins=bins, momentum=momentum)), targets="class_index"
    )
)
ghmr = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum, mu: _build("GHMR", mu=mu, bins=bins, momentum=momentum))
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    PATCHES,
    [
        PortEntry(
            "GHMC (v1.x)",
            "ghmc",
            "c",
            "module(pred, target, label_weight), all (N, C)",
            READS_MASKED,
            "the official semantics (needs a GPU to be constructed)",
        ),
        PortEntry(
            "GHMC (v1.x)",
            "ghmc_class_index",
            "c",
            "module(pred, labels (N,), label_weight (N,)), 0 = background",
            READS_MASKED,
            "the official semantics, called with v1's labels (0 = background)",
            wiring="as mmdetection 1.x's heads call it",
        ),
        PortEntry(
            "GHMR (v1.x)",
            "ghmr",
            "r",
            "module(pred, target, label_weight), all (N, 4)",
            READS_MASKED,
            "the official semantics (literal ASL1; needs a GPU to be constructed)",
        ),
    ],
    origin="open-mmlab/mmdetection",
)
