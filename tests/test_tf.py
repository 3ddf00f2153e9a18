"""What only impl_tf has: XLA, tf.function with unknown dimensions, the EMA variables in graph
modes, Keras integration (masks, fit, saving, mixed precision, integer labels), tf.distribute.
Everything shared with impl_torch is in test_losses.py."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import reference  # noqa: E402
from ghm_conformance import from_keras_loss, run_catalogue  # noqa: E402
from impl_tf import GHMCLoss, GHMRLoss, ghm_c_loss, ghm_r_loss  # noqa: E402

from conftest import assert_catalogue_passes  # noqa: E402
from tolerances import TOLERANCE  # noqa: E402

CLASSES = {"c": GHMCLoss, "r": GHMRLoss}
FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
TESTS = Path(__file__).parent


def _batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(16, 3)).astype(np.float32), rng.integers(0, 2, size=(16, 3)).astype(np.float32))
            for _ in range(n)]


@pytest.mark.parametrize("loss", ["c", "r"])
def test_keras_loss_passes_reference_properties_under_xla(loss):
    # XLA compiles once per input shape, so this runs the reference-valued properties on a small budget.
    port = from_keras_loss(lambda **kw: CLASSES[loss](dialect="paper", **kw), jit_compile=True)
    report = run_catalogue(port, loss, dialect="paper", max_examples=6, only=("value", "ema", "saturated", "masked"))
    assert_catalogue_passes(report, "paper")


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_ema_variable_matches_reference_state(mode, dialect):
    loss = GHMCLoss(bins=10, momentum=0.75, dialect=dialect)
    call = {"eager": loss, "function": tf.function(loss.__call__),
            "xla": tf.function(loss.__call__, jit_compile=True)}[mode]
    state = None
    for x, t in _batches():
        out = call(tf.constant(t), tf.constant(x))
        ref = reference.ghm_c(x, t, bins=10, momentum=0.75, state=state, dialect=dialect)
        state = ref.state
        np.testing.assert_allclose(float(out), ref.loss, **TOLERANCE["float32"])
        np.testing.assert_allclose(loss.ema.numpy(), ref.state, **TOLERANCE["float32"])
    assert not loss.ema.trainable and loss.ema_initialized.numpy()


# ---------------------------------------------------------------- shapes unknown at trace time

UNKNOWN_2D = tf.TensorSpec([None, None])


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("loss", ["c", "r"])
def test_unknown_dimensions_are_checked_at_run_time_not_broadcast(jit, loss):
    fn = FUNCTIONS[loss]
    f = tf.function(lambda t, x: fn(t, x), input_signature=[UNKNOWN_2D, UNKNOWN_2D], jit_compile=jit)
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    good = f(tf.zeros([16, 4]), tf.constant(x))
    np.testing.assert_allclose(float(good), float(fn(tf.zeros([16, 4]), x)), **TOLERANCE["compiled_vs_eager"])
    with pytest.raises(tf.errors.InvalidArgumentError):
        f(tf.zeros([16, 1]), tf.constant(x))  # eager raises ValueError; a graph must not broadcast
    g = tf.function(lambda t, x, w: fn(t, x, w), input_signature=[UNKNOWN_2D, UNKNOWN_2D, UNKNOWN_2D],
                    jit_compile=jit)
    with pytest.raises(tf.errors.InvalidArgumentError):
        g(tf.zeros([16, 4]), tf.constant(x), tf.ones([16, 1]))


def test_reduce_retracing_checks_shapes_too():
    f = tf.function(lambda t, x: ghm_c_loss(t, x), reduce_retracing=True)
    for n in (4, 5, 6):  # the third call is traced with a None dimension
        f(tf.zeros([n, 3]), tf.zeros([n, 3]))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        f(tf.zeros([7, 1]), tf.zeros([7, 3]))


def test_unknown_rank_or_class_count_gives_a_clear_error():
    f = tf.function(lambda t, x: ghm_c_loss(t, x), input_signature=[tf.TensorSpec(None, tf.int64), tf.TensorSpec(None)])
    with pytest.raises(ValueError, match="known rank"):
        f.get_concrete_function()
    g = tf.function(lambda t, x: ghm_c_loss(t, x),
                    input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None])])
    with pytest.raises(ValueError, match="number of classes"):
        g.get_concrete_function()
    h = tf.function(lambda t, x: ghm_c_loss(t, x), input_signature=[tf.TensorSpec(None), tf.TensorSpec(None)])
    assert float(h(tf.zeros([2, 3]), tf.zeros([2, 3]))) == pytest.approx(math.log(2) / 30, rel=1e-6)


# ---------------------------------------------------------------- Keras integration

def test_config_round_trip_and_serialization():
    for loss in (GHMCLoss(bins=12, momentum=0.5, dialect="mmdet", reduction="sum", loss_weight=2.0),
                 GHMRLoss(mu=0.1, bins=7, momentum=0.7, loss_weight=10.0)):
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config()
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_model_fit_trains_updates_ema_and_saved_model_reloads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = (x[:, :3] + 0.3 * rng.normal(size=(256, 3)) > 0.5).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    loss = GHMCLoss(bins=10, momentum=0.75)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    history = model.fit(x, y, batch_size=64, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert loss.ema.numpy().sum() > 0 and loss.ema_initialized.numpy()
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    rloss = restored.loss
    assert isinstance(rloss, GHMCLoss) and rloss.get_config() == loss.get_config()
    np.testing.assert_array_equal(rloss.ema.numpy(), loss.ema.numpy())


def test_mixed_float16_policy_model():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
        y = (x[:, :3] > 0).astype(np.float32)
        pred = model(x)
        assert pred.dtype == "float16"
        loss = GHMCLoss(bins=10)
        out = loss(y, pred)
        assert out.dtype == tf.float32
        ref = reference.ghm_c(tf.cast(pred, tf.float32).numpy(), y, bins=10).loss
        np.testing.assert_allclose(float(out), ref, **TOLERANCE["half_inputs"])
        model.compile(optimizer="sgd", loss=loss)
        model.fit(x, y, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("loss", ["c", "r"])
def test_keras_mask_marks_entries_invalid_like_a_zero_weight(loss):
    # Embedding(mask_zero=True) attaches a mask to y_pred: padded steps must not enter N or the histogram
    tokens = np.array([[3, 5, 2, 0, 0], [7, 1, 0, 0, 0]])
    emb = keras.layers.Embedding(10, 4, mask_zero=True)
    pred = emb(tokens)
    assert getattr(pred, "_keras_mask", None) is not None
    target = np.random.default_rng(1).integers(0, 2, size=(2, 5, 4)).astype(np.float32)
    mask = (tokens > 0).astype(np.float32)
    got = CLASSES[loss](bins=5)(target, pred)
    ref = reference.ghm_c if loss == "c" else reference.ghm_r
    want = ref(pred.numpy(), target, mask, bins=5).loss
    np.testing.assert_allclose(float(got), want, **TOLERANCE["float32"])
    both = CLASSES[loss](bins=5)(target, pred, sample_weight=np.array([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.float32))
    want_both = ref(pred.numpy(), target, mask * np.array([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]]), bins=5).loss
    np.testing.assert_allclose(float(both), want_both, **TOLERANCE["float32"])


def test_dense1_model_with_integer_labels_is_rejected_not_trained_inverted():
    # Dense(1) with y of shape (N,) integer: read as class indices (1 = background) it trains to the
    # opposite answer. It must be an error that says what to pass; y[:, None] trains as expected.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def compiled_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=GHMCLoss(bins=10))
        return model

    with pytest.raises(ValueError, match="ambiguous"):
        compiled_model().fit(x, y, epochs=1, verbose=0)
    model = compiled_model()
    model.fit(x, y[:, None], batch_size=64, epochs=10, verbose=0)
    accuracy = float(np.mean((model.predict(x, verbose=0)[:, 0] > 0) == (y == 1)))
    assert accuracy > 0.9, f"a binary task trained with integer labels shaped like pred: accuracy {accuracy}"


# ---------------------------------------------------------------- tf.distribute (a subprocess: it needs 2 logical CPUs)

def test_mirrored_strategy_matches_one_device():
    proc = subprocess.run([sys.executable, str(TESTS / "tf_distributed_check.py")], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)])))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # bins = 1: GHM-C is the plain BCE, so one device and two replicas must train identically
    for key in ("fit_loss", "evaluate_loss", "weights"):
        np.testing.assert_allclose(out["two"][key], out["one"][key], rtol=1e-5, atol=1e-7, err_msg=key)
        np.testing.assert_allclose(out["two"][key], out["bce_two"][key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert out["outside_scope_error"] and "strategy.scope()" in out["outside_scope_error"]
    assert out["replica_states_equal"], "the EMA variable must hold one value on every replica"


# ---------------------------------------------------------------- scale

@pytest.mark.parametrize("bins", [1, 2, 9, 10, 30, 31, 180, 181, 255])
def test_xla_region_counts_are_exact_for_every_packing(bins):
    # Under XLA the counts come from k indices packed per code (k = 4, 3, 2 or 1 with bins):
    # every tail length (N mod k), empty input and a skewed histogram must give bincount's counts.
    from impl_tf._harmonize import region_counts

    count = tf.function(lambda ind: region_counts(ind, bins), jit_compile=True)
    rng = np.random.default_rng(bins)
    for n in (0, 1, 2, 3, 4, 5, 7, 1000, 4099):
        ind = rng.integers(0, bins + 1, n).astype(np.int32)
        ind[: n // 2] = bins // 2  # most entries in one region, as in a detector
        got = count(tf.constant(ind)).numpy()
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.bincount(ind, minlength=bins + 1), err_msg=f"bins={bins}, n={n}")


@pytest.mark.slow
def test_xla_sum_of_two_to_the_24_terms_is_accurate():
    n = (1 << 24) + 3
    x = np.zeros((n, 1), np.float32)
    x[:5] = 4.0
    t = np.zeros_like(x)
    expected = (math.log(2) + math.log1p(math.exp(4.0))) / 30
    f = tf.function(lambda t, x: ghm_c_loss(t, x), jit_compile=True)
    np.testing.assert_allclose(float(f(t, x)), expected, **TOLERANCE["huge_sum"])
