"""httpswlt/pytorch_small_tools: a GHM-C / GHM-R pair written from the official loop
(``acc_sum`` from zeros, updated where a region is non-empty, weights over the non-empty
regions), without label weights, N = every entry, the weights clamped below at 1e-4, the loss
``F.binary_cross_entropy_with_logits(x, target, weight=w)`` (the mean); ``alpha`` is the momentum.
GHMRLoss sets ``self._mu`` and reads ``self.mu`` (and ``x.size[0]``).

Source: httpswlt/pytorch_small_tools @ 070b175f273a1eb838f268a6c8f81c9e8115a0e8, cell/GHMLoss.py.
Download: ``git clone https://github.com/httpswlt/pytorch_small_tools DIR/httpswlt/pytorch_small_tools
&& git -C DIR/httpswlt/pytorch_small_tools checkout 070b175``.

Load-time patches: none. Wiring: ``alpha`` is the kit's momentum.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("httpswlt/pytorch_small_tools", "070b175f273a1eb838f268a6c8f81c9e8115a0e8", "cell/GHMLoss.py")


def _module():
    return load(SOURCE, module_name="pytorch_small_tools_port.GHMLoss")


ghmc = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum: _module().GHMCLoss(bins, momentum), label_weight=False)
)
ghmr = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMRLoss(bins, momentum, mu), label_weight=False)
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMCLoss",
            "ghmc",
            "c",
            "module(x, target), no label weight",
            "conforms: mmdet",
            "the official semantics without label weights (the 1e-4 floor on the weights is never reached: "
            "beta >= 1/bins without momentum)",
        ),
        PortEntry(
            "GHMRLoss",
            "ghmr",
            "r",
            "module(x, target), no label weight",
            "dialect: neither; fails: value, ema, independent_instances, saturated, scale, uniform, one_region, "
            "permutation, duplication, finite_diff",
            "sets self._mu but reads self.mu: AttributeError on every call",
        ),
    ],
)
