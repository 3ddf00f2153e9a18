"""GXYM/GHM_Loss: the TensorFlow 1 GHM-C and GHM-R this project began from (its README explains
the paper; forked verbatim as ForrestPi/GHM_Loss). Two classes, ``GHM_Loss`` and ``GHM_Loss2``, that
differ only in their shapes (``GHM_Loss`` broadcasts g against (bins, 1, 1, 1) edges and widens
the last edge by 1e-3, ``GHM_Loss2`` against (bins, 1, 1) with 1e-6): every region at once, O(bins
x N) memory, the accumulator a ``tf.Variable`` from zeros updated where a region is non-empty,
weights divided by the non-empty regions without a guard. ``ghm_regression_loss`` reads
``self.mu``, which no constructor sets.

Source: GXYM/GHM_Loss @ 141662185e46a2a23514ac0b4e7bac1ada4fbe0b, GHM.py. Download: ``git clone
https://github.com/GXYM/GHM_Loss DIR/GXYM/GHM_Loss && git -C DIR/GXYM/GHM_Loss checkout 1416621``.

Load-time patch: its ``import tensorflow as tf`` gets TensorFlow 2 with the TF1 function
``tf.assign`` (= ``tf.compat.v1.assign``) added; it then runs eagerly. Wiring, as its docstring
says: ``ghm_class_loss(logits, targets, masks)`` with the label weight as ``masks``; GHM-R is called
as ``ghm_regression_loss(logits, targets, masks)`` and ``mu`` is given to the constructor's object
the only way the code could read it, not at all (so it raises, as it would for any user).
"""

from ghm_conformance import from_keras_loss

from ._load import Adapter, LazyFactory, PortEntry, Source, load
from .ghm_loss_tensorflow import _TF1

SOURCE = Source("GXYM/GHM_Loss", "141662185e46a2a23514ac0b4e7bac1ada4fbe0b", "GHM.py")
PATCHES = ("`import tensorflow as tf`: TensorFlow 2 with `tf.assign = tf.compat.v1.assign` (TF1 API)",)


def _module():
    return load(SOURCE, module_name="gxym_port.GHM", stubs={"tensorflow": _TF1()})


class _Loss:
    """Keras argument order onto ``ghm_class_loss(logits, targets, masks)`` (or the regression one)."""

    def __init__(self, loss, regression=False):
        self.loss, self.regression = loss, regression

    def __call__(self, y_true, y_pred, sample_weight=None):
        fn = self.loss.ghm_regression_loss if self.regression else self.loss.ghm_class_loss
        return fn(y_pred, y_true, sample_weight)


def _factory(cls_name: str, regression: bool = False):
    def make(bins, momentum, **_):
        return _Loss(getattr(_module(), cls_name)(bins=bins, momentum=momentum), regression)

    return make


ghmc = LazyFactory(lambda: from_keras_loss(_factory("GHM_Loss")))
ghmc2 = LazyFactory(lambda: from_keras_loss(_factory("GHM_Loss2")))
ghmr = LazyFactory(lambda: from_keras_loss(_factory("GHM_Loss", regression=True)))

UNGUARDED = (
    "the official semantics, but the weights are divided by the number of non-empty regions without a "
    "guard: NaN when every entry is masked; O(bins x N) memory"
)
ADAPTER = Adapter(
    SOURCE,
    "tf",
    PATCHES,
    [
        PortEntry(
            "GHM_Loss.ghm_class_loss",
            "ghmc",
            "c",
            "ghm_class_loss(logits, targets, masks)",
            "dialect: mmdet; fails: all_masked; notes: reads masked values (NaN/Inf there propagates)",
            UNGUARDED,
        ),
        PortEntry(
            "GHM_Loss2.ghm_class_loss",
            "ghmc2",
            "c",
            "ghm_class_loss(logits, targets, masks)",
            "dialect: mmdet; fails: all_masked; notes: reads masked values (NaN/Inf there propagates)",
            UNGUARDED,
        ),
        PortEntry(
            "GHM_Loss.ghm_regression_loss",
            "ghmr",
            "r",
            "ghm_regression_loss(logits, targets, masks)",
            "dialect: neither; fails: value, ema, ema_empty, independent_instances, saturated, scale, uniform, "
            "one_region, permutation, duplication, masked, weight_mask, all_masked, finite_diff; notes: not judged: "
            "the port raised AttributeError with finite values in the masked entries",
            "reads self.mu, which no constructor sets: AttributeError on every call",
        ),
    ],
    copies=("ForrestPi/GHM_Loss",),
)
