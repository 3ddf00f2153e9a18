"""Run by test_tf.py in a subprocess (logical devices must be set before TensorFlow starts):
train the same model on one device and under MirroredStrategy over 2 logical CPUs, and print
what the test compares as one JSON line."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from impl_tf import GHMCLoss, GHMRLoss  # noqa: E402

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
    return {
        "fit_loss": history.history["loss"],
        "evaluate_loss": float(evaluated),
        "weights": model.get_weights()[0].ravel().tolist(),
    }


one = tf.distribute.OneDeviceStrategy("/cpu:0")
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert two.num_replicas_in_sync == 2


def sync_checks() -> dict:
    """sync_density=True: a custom loop with unequal and empty shards against the reference on
    the concatenated batch, and model.fit against one device on the whole batch."""
    import reference

    compare = {}
    splits = [[5, 2], [0, 6], [3, 3]]
    for kind, fn, cls in (("c", reference.ghm_c, GHMCLoss), ("r", reference.ghm_r, GHMRLoss)):
        for dialect in ("paper", "mmdet"):
            with two.scope():
                loss = cls(bins=5, momentum=0.75, dialect=dialect, sync_density=True)

            @tf.function
            def step(x, t, w):
                def replica(x, t, w):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        value = loss(t, x, w)  # noqa: B023 - traced in this iteration
                    return value, tape.gradient(value, x)

                return two.run(replica, args=(x, t, w))

            state = None
            for i, rows in enumerate(splits):
                rng = np.random.default_rng(i)
                x = rng.normal(size=(sum(rows), 4)).astype(np.float32) * 2
                t = (
                    (rng.random(x.shape) < 0.3).astype(np.float32)
                    if kind == "c"
                    else x + rng.normal(size=x.shape).astype(np.float32) * 0.05
                )
                w = (rng.random(x.shape) < 0.85).astype(np.float32)
                starts = [0, rows[0]]

                def part(a, starts=starts, rows=rows):
                    return two.experimental_distribute_values_from_function(
                        lambda ctx: tf.constant(
                            a[starts[ctx.replica_id_in_sync_group] :][: rows[ctx.replica_id_in_sync_group]]
                        )
                    )

                values, grads = step(part(x), part(t), part(w))
                ref = fn(x, t, w, bins=5, momentum=0.75, state=state, dialect=dialect)
                state = ref.state
                key = f"{kind}-{dialect}-{i}"
                losses = [float(v) for v in two.experimental_local_results(values)]
                grad = np.concatenate([g.numpy() for g in two.experimental_local_results(grads)])
                # tf.distribute sums the replicas: the sum of the values and the gradients per slice are global
                compare[key + "-loss"] = (sum(losses), ref.loss)
                compare[key + "-grad"] = (grad.tolist(), ref.grad.tolist())
                compare[key + "-ema"] = (loss.ema.numpy().tolist(), ref.state.tolist())
    # model.fit: 2 replicas with the synced loss train exactly as one device on the whole batch
    weights = []
    for strategy, sync in ((one, False), (two, True)):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
            model.compile(optimizer=keras.optimizers.SGD(0.5), loss=GHMCLoss(bins=5, momentum=0.75, sync_density=sync))
        y3 = (np.random.default_rng(5).random((64, 3)) < 0.3).astype(np.float32)
        model.fit(X, y3, batch_size=16, epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights()[0].ravel().tolist())
    compare["fit-weights"] = (weights[1], weights[0])
    return {"compare": compare}


if sys.argv[1:] == ["sync"]:
    print(json.dumps(sync_checks()))
    sys.exit(0)

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
values = [v.numpy() for v in two.experimental_local_results(inside.state.ema.value)]  # the tf.Variable
out["replica_states_equal"] = bool(len(values) == 2 and np.array_equal(values[0], values[1]) and values[0].sum() > 0)
print(json.dumps(out))
