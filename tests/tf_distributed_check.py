"""Run by test_tf.py in a subprocess (logical devices must be set before TensorFlow starts):
train the same model on one device and under MirroredStrategy over 2 logical CPUs, and print
what the test compares as one JSON line."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from impl_tf import GHMCLoss  # noqa: E402

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8)).astype(np.float32)
Y = (rng.random((64, 1)) < 0.3).astype(np.float32)


def train(strategy, make_loss):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=make_loss())
    history = model.fit(X, Y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    evaluated = model.evaluate(X, Y, batch_size=32, verbose=0)
    return {"fit_loss": history.history["loss"], "evaluate_loss": float(evaluated),
            "weights": model.get_weights()[0].ravel().tolist()}


one = tf.distribute.OneDeviceStrategy("/cpu:0")
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert two.num_replicas_in_sync == 2
out = {
    "one": train(one, lambda: GHMCLoss(bins=1)),
    "two": train(two, lambda: GHMCLoss(bins=1)),
    "bce_two": train(two, lambda: keras.losses.BinaryCrossentropy(from_logits=True)),
}

# A loss with momentum created outside the strategy's scope cannot keep one state: a clear error.
outside = GHMCLoss(bins=10, momentum=0.75)
try:
    with two.scope():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss=outside)
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    out["outside_scope_error"] = ""
except ValueError as e:
    out["outside_scope_error"] = str(e)

# Created inside the scope: trains, and every replica holds the same EMA state.
with two.scope():
    inside = GHMCLoss(bins=10, momentum=0.75)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=inside)
model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
values = [v.numpy() for v in two.experimental_local_results(inside.ema)]
out["replica_states_equal"] = bool(len(values) == 2 and np.array_equal(values[0], values[1]) and values[0].sum() > 0)
print(json.dumps(out))
