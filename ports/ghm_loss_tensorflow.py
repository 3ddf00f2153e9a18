"""xyfZzz/GHM_Loss_Tensorflow: a TensorFlow 1 GHM-C that evaluates every region at once by
broadcasting g against a (bins, 1, 1) stack of edges (O(bins x N) memory), the accumulator from
zeros updated where a region is non-empty; label weights only with ``is_mask=True``.

Source: xyfZzz/GHM_Loss_Tensorflow @ df049da8ec2a5b5bf886812183f0aed3405b68e8, ghmc_tensorflow.py.
Download: ``git clone https://github.com/xyfZzz/GHM_Loss_Tensorflow DIR/xyfZzz/GHM_Loss_Tensorflow``.

Load-time patch: its ``import tensorflow as tf`` gets TensorFlow 2 with the TF1 function
``tf.assign`` (= ``tf.compat.v1.assign``) added; it then runs eagerly (its ``tf.control_dependencies``
is a no-op there, its assignments happen in order).

Copies: DataCanvasIO/DeepTables keeps this GHMCLoss in deeptables/models/layers.py (a tabular deep
learning library; ``tf.compat.v1.assign`` spelled out), counted once, here.
"""

import types

from ghm_conformance import from_keras_loss

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("xyfZzz/GHM_Loss_Tensorflow", "df049da8ec2a5b5bf886812183f0aed3405b68e8", "ghmc_tensorflow.py")
PATCHES = ("`import tensorflow as tf`: TensorFlow 2 with `tf.assign = tf.compat.v1.assign` (TF1 API)",)


class _TF1(types.ModuleType):
    """TensorFlow 2 as a TF1 file sees it: every attribute, and the TF1 functions it calls."""

    def __init__(self):
        import tensorflow as tf

        super().__init__("tensorflow")
        self._tf = tf
        self.assign = tf.compat.v1.assign

    def __getattr__(self, name):
        return getattr(self._tf, name)


def _module():
    return load(SOURCE, module_name="ghm_loss_tensorflow_port.ghmc", stubs={"tensorflow": _TF1()})


class _Loss:
    """Keras argument order onto ``calc(input, target, mask, is_mask)``."""

    def __init__(self, loss, is_mask):
        self.loss, self.is_mask = loss, is_mask

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.is_mask:
            return self.loss.calc(y_pred, y_true, sample_weight, is_mask=True)
        return self.loss.calc(y_pred, y_true)


ghmc = LazyFactory(
    lambda: from_keras_loss(
        lambda bins, momentum: _Loss(_module().GHMCLoss(bins=bins, momentum=momentum), False), label_weight=False
    )
)
ghmc_masked = LazyFactory(
    lambda: from_keras_loss(lambda bins, momentum: _Loss(_module().GHMCLoss(bins=bins, momentum=momentum), True))
)

ADAPTER = Adapter(
    SOURCE,
    "tf",
    PATCHES,
    [
        PortEntry(
            "GHMCLoss",
            "ghmc",
            "c",
            "loss.calc(logits, target), no mask",
            "conforms: mmdet",
            "",
            wiring="as written (is_mask=False: every entry counts)",
        ),
        PortEntry(
            "GHMCLoss",
            "ghmc_masked",
            "c",
            "loss.calc(logits, target, mask, is_mask=True)",
            "dialect: mmdet; fails: all_masked; notes: reads masked values (NaN/Inf there propagates)",
            "divides the weights by the number of non-empty regions without a guard: NaN when every entry is "
            "masked; O(bins x N) memory",
            wiring="with its mask (is_mask=True)",
        ),
    ],
    copies=("DataCanvasIO/DeepTables",),
)
