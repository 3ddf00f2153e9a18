"""mmdetection's GHMC and GHMR from v2.16 on (v3.x has the same body under ``mmdet.registry``):
the 2.x code with ``reduction`` / ``reduction_override`` and the loss reduced by mmdetection's
``weight_reduce_loss(loss, weights, reduction, avg_factor=tot)``, here as a fork keeps it.

Source: Li-Hongda/det @ e41e3321790fb83e35d13c1a4044936617ee758e, mmdet/models/losses/ghm_loss.py
(mmdetection's file, unchanged in the fork). Download: ``git clone https://github.com/Li-Hongda/det
DIR/Li-Hongda/det && git -C DIR/Li-Hongda/det checkout e41e332``.

Load-time patches: ``from ..builder import LOSSES`` gets a registry stub; ``from .utils import
weight_reduce_loss`` gets our transcription of mmdetection's function (the loss times the
weights; "mean" with avg_factor: the sum over avg_factor + float32 eps).
"""

import torch

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Registry, Source, load, stub
from .mmdet_2x import READS_MASKED

SOURCE = Source("Li-Hongda/det", "e41e3321790fb83e35d13c1a4044936617ee758e", "mmdet/models/losses/ghm_loss.py")
PATCHES = (
    "`from ..builder import LOSSES`: a registry stub (register_module returns the class)",
    "`from .utils import weight_reduce_loss`: mmdetection's weight_reduce_loss, transcribed",
)


def weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    """mmdetection's semantics: multiply by the weight; with avg_factor, "mean" is the sum over
    avg_factor + eps and "sum" is refused; without, a plain reduction."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if reduction != "none":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def _module():
    return load(
        SOURCE,
        module_name="mmdet_port.models.losses.ghm_loss",
        stubs={
            "mmdet_port.models.builder": stub("mmdet_port.models.builder", LOSSES=Registry()),
            "mmdet_port.models.losses.utils": stub(
                "mmdet_port.models.losses.utils", weight_reduce_loss=weight_reduce_loss
            ),
        },
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
            "GHMC (v2.16+, v3.x)",
            "ghmc",
            "c",
            "module(pred, target, label_weight), all (N, C)",
            READS_MASKED,
            "the official semantics; a NaN held by a masked anchor reaches the sum (0 * NaN)",
        ),
        PortEntry(
            "GHMR (v2.16+, v3.x)",
            "ghmr",
            "r",
            "module(pred, target, label_weight), all (N, 4)",
            READS_MASKED,
            "the official semantics (literal ASL1)",
        ),
    ],
    origin="open-mmlab/mmdetection",
)
