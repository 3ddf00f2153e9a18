"""hugddygff/IAT: a TensorFlow GHM-C for sequence labelling (tokens x classes) that follows the
official loop with ``tf.cond`` per region, but with a *softmax*: g = |softmax(x) - t|, the
weights kept only on the target class (``weights *= target``, summed over the classes), the loss
``softmax_cross_entropy_with_logits`` per token; the mask has one column more than the tokens
(``mask[:, 1:]``, a [CLS] position) and is both the validity test and a multiplier.

Source: hugddygff/IAT @ 69ed427c9aa5608df8a615f715105037e8d3bc3f, ghm_loss.py. Download: ``git clone
https://github.com/hugddygff/IAT DIR/hugddygff/IAT && git -C DIR/hugddygff/IAT checkout 69ed427``.

Load-time patches: none (TensorFlow 2 runs it eagerly; its ``tf.cond`` branches are Python
functions that update ``self.acc_sum``, a Python list). Wiring, as it is called: one sequence of
N tokens, ``input`` (1, N, C), one-hot ``target`` (1, N, C) (the kit's class indices), ``mask``
(1, N + 1) with the anchor weights after a leading 1.
"""

from ghm_conformance import from_keras_loss
from ghm_conformance.protocol import with_class_index_targets

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("hugddygff/IAT", "69ed427c9aa5608df8a615f715105037e8d3bc3f", "ghm_loss.py")


def _module():
    return load(SOURCE, module_name="iat_port.ghm_loss")


class _Sequence:
    """labels (N,) with C = background and weights (N,) -> calc(input (1, N, C), one-hot (1, N, C), mask (1, N+1))."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, y_true, y_pred, sample_weight=None):
        import tensorflow as tf

        _n, c = y_pred.shape
        onehot = tf.one_hot(tf.cast(y_true, tf.int32), c, dtype=y_pred.dtype)  # label C: an all-zero row
        mask = tf.concat([tf.ones([1], y_pred.dtype), tf.cast(sample_weight, y_pred.dtype)], 0)[None]
        return self.loss.calc(y_pred[None], onehot[None], mask)


ghmc = LazyFactory(
    lambda: with_class_index_targets(
        from_keras_loss(lambda bins, momentum: _Sequence(_module().GHMC_Loss(bins=bins, momentum=momentum)))
    )
)

ADAPTER = Adapter(
    SOURCE,
    "tf",
    (),
    [
        PortEntry(
            "GHMC_Loss (softmax)",
            "ghmc",
            "c",
            "loss.calc(input (1, N, C), one-hot (1, N, C), mask (1, N + 1))",
            "dialect: neither; fails: value, ema, ema_empty, scale, one_region, masked, weight_mask, all_masked, "
            "finite_diff; notes: reads masked values (NaN/Inf there propagates)",
            "a softmax GHM: g and the cross entropy of the softmax over the classes, weights only on the target "
            "class; not the per-entry sigmoid GHM-C of the paper",
            wiring="as a sequence labeller calls it",
        ),
    ],
)
