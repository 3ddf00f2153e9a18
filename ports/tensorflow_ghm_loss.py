"""peteryuX/tensorflow-GHM-loss: TensorFlow 1 GHM-C *weights* (``get_ghm_weight``), a variable
"statistics" per region started at N/bins (the first batch spread evenly, not its counts),
every region moved by the EMA, beta = N / (S * bins) (the paper's normalisation), and the stored
statistics clamped from below at N/bins; its update op goes to ``UPDATE_OPS`` for the optimizer
to run, as batch norm's does.

Source: peteryuX/tensorflow-GHM-loss @ a103e8b5b9abfb7fe30e32648817ce8875d381c6, tf_ghm_loss.py.
Download: ``git clone https://github.com/peteryuX/tensorflow-GHM-loss DIR/peteryuX/tensorflow-GHM-loss``.

Load-time patches: its ``import tensorflow as tf`` gets ``tf.compat.v1`` (the TF1 API it is
written in: variable_scope, get_variable, GraphKeys). Wiring, as its README says: ``predict`` is
the probability sigmoid(logit); each instance has its own graph and session, each call builds
the op (variables reused: AUTO_REUSE), runs it, then runs the newest update op, as a training
step would; the kit forms (1/N) sum beta_i BCE_i from the weights.
"""

import numpy as np

from ghm_conformance import from_weights

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("peteryuX/tensorflow-GHM-loss", "a103e8b5b9abfb7fe30e32648817ce8875d381c6", "tf_ghm_loss.py")
PATCHES = ("`import tensorflow as tf`: `tensorflow.compat.v1` (the TF1 API), in a graph and session per instance",)


def _module():
    import tensorflow as tf

    return load(SOURCE, module_name="tensorflow_ghm_loss_port.tf_ghm_loss", stubs={"tensorflow": tf.compat.v1})


class _Weights:
    def __init__(self, bins, alpha):
        import tensorflow as tf

        self.v1, self.bins, self.alpha = tf.compat.v1, bins, alpha
        self.graph = tf.Graph()
        self.session = self.v1.Session(graph=self.graph)
        self.fn, self.initialized = _module().get_ghm_weight, False

    def __call__(self, pred, target, label_weight):
        v1 = self.v1
        with self.graph.as_default(), v1.variable_scope(v1.get_variable_scope(), reuse=v1.AUTO_REUSE):
            probability = v1.sigmoid(v1.constant(pred))
            weights = self.fn(
                probability, v1.constant(target), v1.constant(label_weight), bins=self.bins, alpha=self.alpha
            )
            update = v1.get_collection(v1.GraphKeys.UPDATE_OPS)[-1]
            if not self.initialized:
                self.session.run(v1.global_variables_initializer())
                self.initialized = True
        beta = self.session.run(weights)
        self.session.run(update)
        return np.asarray(beta)


ghmc = LazyFactory(lambda: from_weights(lambda bins, momentum: _Weights(bins, momentum), "c", framework="tf"))

ADAPTER = Adapter(
    SOURCE,
    "tf (TF1 graph)",
    PATCHES,
    [
        PortEntry(
            "get_ghm_weight",
            "ghmc",
            "c",
            "get_ghm_weight(sigmoid(logits), target, valid_mask): beta only",
            "dialect: paper (without momentum only); fails: ema, ema_empty",
            "its EMA starts from N/bins per region instead of the first counts, and the stored statistics never "
            "fall below N/bins, so rare regions are never up-weighted",
            wiring="as its README says: probabilities in, the update op run after each step",
        ),
    ],
)
