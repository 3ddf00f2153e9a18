"""mmdetection 2.x GHMC and GHMR, as ``open-mmlab/mmdetection`` shipped them before v2.16 (the
official code carried from GHM_Detection: BCE / literal ASL1 over every entry times the weights,
a Python loop over regions with a host sync each, the accumulator from zeros).

Source: open-mmlab/mmdetection @ 3b620ebd27f0ec678b89f8b58e406e81359a3adc,
mmdet/models/losses/ghm_loss.py. Download: ``git clone https://github.com/open-mmlab/mmdetection
DIR/open-mmlab/mmdetection && git -C DIR/open-mmlab/mmdetection checkout 3b620ebd``.

Load-time patch: ``from ..builder import LOSSES`` gets a registry stub whose
``register_module()`` returns the class unchanged.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Registry, Source, load, stub

SOURCE = Source("open-mmlab/mmdetection", "3b620ebd27f0ec678b89f8b58e406e81359a3adc", "mmdet/models/losses/ghm_loss.py")
PATCHES = ("`from ..builder import LOSSES`: a registry stub (register_module returns the class)",)
READS_MASKED = "conforms: mmdet; notes: reads masked values (NaN/Inf there propagates)"


def _module():
    return load(SOURCE, module_name="mmdet_port.models.losses.ghm_loss",
                stubs={"mmdet_port.models.builder": stub("mmdet_port.models.builder", LOSSES=Registry())})


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum)))
ghmc_class_index = LazyFactory(lambda: from_torch_module(
    lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum), targets="class_index"))
ghmr = LazyFactory(lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMR(mu=mu, bins=bins,
                                                                                       momentum=momentum)))

ADAPTER = Adapter(SOURCE, "torch", PATCHES, [
    PortEntry("GHMC", "ghmc", "c", "module(pred, target, label_weight), all (N, C)", READS_MASKED,
              "the official semantics; a NaN held by a masked anchor reaches the sum (0 * NaN)"),
    PortEntry("GHMC", "ghmc_class_index", "c", "module(pred, labels (N,), label_weight (N,)), C = background",
              READS_MASKED, "the official semantics, called with mmdetection's class indices",
              wiring="as mmdetection's heads call it"),
    PortEntry("GHMR", "ghmr", "r", "module(pred, target, label_weight), all (N, 4)", READS_MASKED,
              "the official semantics (literal ASL1, tot = sum of label weights, which cancels)"),
])
