"""JasonZuu/MMFNet-2022: the GHM-C of a multi-modal face-based classifier (two sigmoid outputs),
mmdetection 1.x's loop applied to *probabilities*: its network ends in a sigmoid, g = |p - t|,
the loss ``F.binary_cross_entropy(p, t, weights, reduction='sum') / batch_size`` with tot the
batch size passed by the trainer (the rows; it cancels), no label weight. BCE on probabilities
clamps log at -100, so a saturated sigmoid (p = 0 or 1 in float32) gives a capped loss and a
zero gradient.

Source: JasonZuu/MMFNet-2022 @ 122694d9eeed646c70427ce4dbb6083fa4d3209d, loss/ghmc_loss.py (later
commits moved it to a function in utils/loss_fn.py). Download: ``git clone
https://github.com/JasonZuu/MMFNet-2022 DIR/JasonZuu/MMFNet-2022 && git -C DIR/JasonZuu/MMFNet-2022
checkout 122694d``.

Load-time patches: none. Wiring, as its trainer (experiments/4Loss_baseline/MMFNet_GHMC.py) calls
it: ``criterion(sigmoid(logits), labels, batch_size)`` with batch_size = the rows of the batch;
the gradient is taken through the sigmoid, with respect to the logits.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("JasonZuu/MMFNet-2022", "122694d9eeed646c70427ce4dbb6083fa4d3209d", "loss/ghmc_loss.py")


def _module():
    return load(SOURCE, module_name="mmfnet_port.ghmc_loss")


class _OnProbabilities:
    def __init__(self, loss):
        self.loss = loss

    def __call__(self, logits, target):
        return self.loss(logits.sigmoid(), target, logits.shape[0])


ghmc = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _OnProbabilities(_module().GHMC(bins=bins, momentum=momentum)), label_weight=False
    )
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMC",
            "ghmc",
            "c",
            "module(sigmoid(logits), target, batch_size), no label weight",
            "dialect: mmdet; fails: saturated",
            "the official weights, but BCE computed on probabilities in float32: a saturated sigmoid (p = 0 or 1) "
            "gives log clamped at -100 and a zero gradient (1 - p also rounds for confident logits, |x| about 10 "
            "and up, within the kit's float32 allowance)",
            wiring="as its trainer calls it: probabilities in",
        ),
    ],
)
