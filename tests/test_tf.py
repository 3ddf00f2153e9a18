"""impl_tf against the reference: the catalogue (eager and XLA), gradients, Keras integration,
dtypes, bad input."""

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import reference  # noqa: E402
from ghm_conformance import from_keras_loss, run_catalogue  # noqa: E402
from ghm_conformance import cases as cs  # noqa: E402
from impl_tf import GHMCLoss, GHMRLoss, ghm_c_loss, ghm_r_loss  # noqa: E402

from conftest import assert_catalogue_passes, examples  # noqa: E402

CLASSES = {"c": GHMCLoss, "r": GHMRLoss}
FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
REF = {"c": reference.ghm_c, "r": reference.ghm_r}


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_keras_loss_passes_catalogue(loss, dialect):
    port = from_keras_loss(lambda **kw: CLASSES[loss](dialect=dialect, **kw))
    assert_catalogue_passes(run_catalogue(port, loss, dialect=dialect, max_examples=examples()), dialect)


@pytest.mark.parametrize("loss", ["c", "r"])
def test_keras_loss_passes_reference_properties_under_xla(loss):
    # XLA compiles once per input shape, so this runs the reference-valued properties on a small budget.
    port = from_keras_loss(lambda **kw: CLASSES[loss](dialect="paper", **kw), jit_compile=True)
    report = run_catalogue(port, loss, dialect="paper", max_examples=6, only=("value", "ema", "saturated", "masked"))
    assert_catalogue_passes(report, "paper")


# ---------------------------------------------------------------- table-driven against the reference

SETTINGS = [dict(reduction="mean"), dict(reduction="sum"), dict(reduction="none", loss_weight=2.0)]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
@pytest.mark.parametrize("loss", ["c", "r"])
@given(data=st.data())
def test_reductions_match_reference(loss, dialect, kwargs, data):
    case = data.draw(cs.clear_case(loss))
    c = case.calls[0]
    x = tf.constant(c.pred)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = FUNCTIONS[loss](tf.constant(c.target), x, tf.constant(c.label_weight), bins=case.bins, dialect=dialect,
                              **case.hyper, **kwargs)
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, x)
    ref = REF[loss](c.pred, c.target, c.label_weight, bins=case.bins, dialect=dialect, **case.hyper, **kwargs)
    np.testing.assert_allclose(out.numpy(), ref.loss, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(grad.numpy(), ref.grad, rtol=2e-5, atol=1e-7)


def test_worked_examples_and_integer_targets():
    z = np.zeros((2, 3), np.float32)
    assert float(ghm_c_loss(z, z)) == pytest.approx(math.log(2) / 30, rel=1e-6)
    assert float(ghm_c_loss(z, z, dialect="mmdet")) == pytest.approx(math.log(2), rel=1e-6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    labels = np.array([0, 3, 2, 1, 3, 0])
    lw = np.array([1, 1, 0, 1, 1, 1], np.float32)  # per anchor (Keras per-sample shape)
    for dialect in ("paper", "mmdet"):
        got = float(ghm_c_loss(labels, x, lw, bins=4, dialect=dialect))
        assert got == pytest.approx(reference.ghm_c(x, labels, lw, bins=4, dialect=dialect).loss, rel=2e-5)
    assert math.isnan(float(ghm_c_loss(np.array([0, 4, 1, 1, 1, 1]), x)))  # label 4 > C = 3


def test_sample_weight_zero_excludes_entries_from_n_and_histogram():
    x = np.array([[0.0, 2.0, -1.0, 0.5]], np.float32)
    t = np.array([[0.0, 1.0, 0.0, 1.0]], np.float32)
    w = np.array([[1.0, 0.0, 3.0, 1.0]], np.float32)
    got = float(GHMCLoss(bins=5)(t, x, sample_weight=w))
    alone = float(GHMCLoss(bins=5)(t[:, [0, 2, 3]], x[:, [0, 2, 3]]))
    assert got == pytest.approx(alone, rel=1e-6)
    assert got == pytest.approx(reference.ghm_c(x, t, w, bins=5).loss, rel=2e-5)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_compute_gradient_float64_away_from_edges(loss, dialect):
    rng = np.random.default_rng(1)
    bins, mu = 5, 0.5
    j = rng.integers(0, bins, size=12)
    g = (j + rng.uniform(0.3, 0.7, size=12)) / bins
    if loss == "c":
        t = rng.integers(0, 2, size=12).astype(float)
        x = np.log(g / (1 - g)) * np.where(t == 1, -1, 1)
    else:
        t = rng.normal(size=12)
        x = t + rng.choice([-1, 1], size=12) * mu * g / np.sqrt(1 - g * g)
    t = tf.constant(t.reshape(4, 3))
    lw = tf.constant((rng.integers(0, 4, size=(4, 3)) > 0).astype(np.float64))
    hyper = {"mu": mu} if loss == "r" else {}
    fn = lambda x: FUNCTIONS[loss](t, x, lw, bins=bins, dialect=dialect, **hyper)  # noqa: E731
    theoretical, numerical = tf.test.compute_gradient(fn, [tf.constant(x.reshape(4, 3))], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-9)
    ref = REF[loss](x.reshape(4, 3), t.numpy(), lw.numpy(), bins=bins, dialect=dialect, **hyper)
    np.testing.assert_allclose(theoretical[0].reshape(4, 3), ref.grad, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- state and Keras integration

def _batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(16, 3)).astype(np.float32), rng.integers(0, 2, size=(16, 3)).astype(np.float32))
            for _ in range(n)]


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
        assert float(out) == pytest.approx(ref.loss, rel=2e-5)
        np.testing.assert_allclose(loss.ema.numpy(), ref.state, rtol=1e-6)
    assert not loss.ema.trainable and loss.ema_initialized.numpy()


@pytest.mark.parametrize("loss", ["c", "r"])
def test_nan_gives_nan_and_keeps_the_variable(loss):
    fn = CLASSES[loss](momentum=0.75)
    (x1, t1), (x2, t2) = _batches(2)
    fn(t1, x1)
    before = fn.ema.numpy().copy()
    x2[3, 1] = np.nan
    assert math.isnan(float(fn(t2, x2)))
    np.testing.assert_array_equal(fn.ema.numpy(), before)


@pytest.mark.parametrize("loss", ["c", "r"])
def test_empty_and_fully_masked_give_zero(loss):
    fn = CLASSES[loss](momentum=0.75)
    for shape in [(0, 4), (5, 4)]:
        x = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(tf.zeros(shape), x, sample_weight=tf.zeros(shape))
        assert float(out) == 0.0 and not np.any(tape.gradient(out, x).numpy())
    assert not fn.ema.numpy().any()


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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("loss", ["c", "r"])
def test_half_inputs_use_float32_statistics(dtype, loss):
    x, t = _batches(1, seed=3)[0]
    xq = tf.cast(tf.constant(x), dtype)
    tq = tf.constant(t) if loss == "c" else tf.cast(tf.constant(t), dtype)
    x64, t64 = tf.cast(xq, tf.float32).numpy(), tf.cast(tq, tf.float32).numpy()  # the dequantised inputs
    assert not cs.near_edge(cs.gradient_norm(loss, x64, t64, 0.02), 10).any()
    out = FUNCTIONS[loss](tq, xq, bins=10)
    assert out.dtype == tf.float32
    assert float(out) == pytest.approx(REF[loss](x64, t64, bins=10).loss, rel=2e-5)


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
        assert float(out) == pytest.approx(ref, rel=2e-5)
        model.compile(optimizer="sgd", loss=loss)
        model.fit(x, y, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("make, match, exc", [
    (lambda: GHMCLoss(bins=0), "bins", ValueError), (lambda: GHMCLoss(momentum=-0.1), "momentum", ValueError),
    (lambda: GHMCLoss(dialect="x"), "dialect", ValueError), (lambda: GHMRLoss(mu=-1.0), "mu", ValueError),
    (lambda: GHMCLoss(reduction="avg"), "reduction", ValueError),
    (lambda: ghm_c_loss(np.zeros(4, np.float32), np.zeros(3, np.float32)), "y_true", ValueError),
    (lambda: ghm_c_loss(np.zeros(3, np.float32), np.zeros(3, np.float32), np.ones(2, np.float32)), "label_weight", ValueError),
    (lambda: ghm_c_loss(np.zeros(3, np.float32), np.zeros(3, np.int32)), "y_pred", TypeError),
    (lambda: ghm_r_loss(np.zeros(3, np.int32), np.zeros(3, np.float32)), "y_true", TypeError),
    (lambda: ghm_c_loss(np.zeros(3, np.int64), np.zeros((2, 3), np.float32)), "class indices", ValueError),
])
def test_bad_input_raises_naming_the_argument(make, match, exc):
    with pytest.raises(exc, match=match):
        make()
