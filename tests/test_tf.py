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
from conftest import assert_catalogue_passes  # noqa: E402
from ghm_conformance import from_keras_loss, run_catalogue  # noqa: E402
from impl_tf import GHMCLoss, GHMRLoss, ghm_c_loss, ghm_r_loss  # noqa: E402
from tolerances import TOLERANCE  # noqa: E402

CLASSES = {"c": GHMCLoss, "r": GHMRLoss}
FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
TESTS = Path(__file__).parent


def _batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(16, 3)).astype(np.float32), rng.integers(0, 2, size=(16, 3)).astype(np.float32))
        for _ in range(n)
    ]


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
    call = {"eager": loss, "function": tf.function(loss.__call__), "xla": tf.function(loss.__call__, jit_compile=True)}[
        mode
    ]
    state = None
    for x, t in _batches():
        out = call(tf.constant(t), tf.constant(x))
        ref = reference.ghm_c(x, t, bins=10, momentum=0.75, state=state, dialect=dialect)
        state = ref.state
        np.testing.assert_allclose(float(out), ref.loss, **TOLERANCE["float32"])
        np.testing.assert_allclose(loss.ema.numpy(), ref.state, **TOLERANCE["float32"])
    assert not loss.ema.trainable and loss.ema_initialized.numpy()


POISONS = {  # a valid entry that poisons the batch (spec.md 7): (loss, which input, value)
    "c: NaN logit": ("c", "pred", math.nan),
    "c: -Inf logit": ("c", "pred", -math.inf),
    "c: NaN target": ("c", "target", math.nan),
    "c: target 1.5": ("c", "target", 1.5),
    "r: NaN residual": ("r", "pred", math.nan),
    "r: Inf target": ("r", "target", math.inf),
}


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("case", list(POISONS))
def test_poisoned_batch_is_nan_and_leaves_the_ema_bit_identical_in_every_mode(mode, case):
    # The validity check must survive graph optimisation and XLA (is_finite and comparisons, not
    # x * 0 == 0, which an optimiser may fold): a poisoned batch is loud and moves no state.
    kind, which, value = POISONS[case]
    loss = CLASSES[kind](bins=5, momentum=0.75)

    def step(t, x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = loss(t, x, sample_weight=w)
        return out, tape.gradient(out, x)

    run = {"eager": step, "function": tf.function(step), "xla": tf.function(step, jit_compile=True)}[mode]
    (x1, t1), (x2, t2) = _batches(2)
    w = np.ones_like(x1)
    w[0] = 0.0
    x2[0], t2[0] = math.nan, math.inf  # junk in masked entries never counts
    run(tf.constant(t1), tf.constant(x1), tf.constant(w))
    before = (loss.ema.numpy().copy(), bool(loss.ema_initialized.numpy()))
    (x2 if which == "pred" else t2)[5, 1] = value
    out, grad = run(tf.constant(t2), tf.constant(x2), tf.constant(w))
    assert math.isnan(float(out)), f"{case} under {mode}: loss {float(out)}"
    grad = grad.numpy()
    assert np.isnan(grad[1:]).all() and not grad[0].any(), f"{case} under {mode}: NaN on valid entries, 0 on masked"
    assert np.array_equal(loss.ema.numpy(), before[0]) and bool(loss.ema_initialized.numpy()) == before[1], (
        f"{case} under {mode}: a poisoned batch moved the EMA state"
    )


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
    g = tf.function(lambda t, x, w: fn(t, x, w), input_signature=[UNKNOWN_2D, UNKNOWN_2D, UNKNOWN_2D], jit_compile=jit)
    with pytest.raises(tf.errors.InvalidArgumentError):
        g(tf.zeros([16, 4]), tf.constant(x), tf.ones([16, 1]))


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("known", ["pred", "weight", "neither"])
def test_unknown_rank_decides_full_or_per_anchor_weights_at_run_time(jit, known):
    # Found by fuzzing (issue 19): with a rank unknown when traced, a valid per-anchor weight was
    # reshaped as a full one (or the reverse) and rejected.
    unknown, rank2 = tf.TensorSpec(None), tf.TensorSpec([None, None])
    signature = [
        unknown,
        rank2 if known == "pred" else unknown,
        tf.TensorSpec([None]) if known == "weight" else unknown,
    ]
    f = tf.function(lambda t, x, w: ghm_c_loss(t, x, w, bins=5), input_signature=signature, jit_compile=jit)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    t = (x > 0.3).astype(np.float32)
    w_anchor = np.array([1, 0, 1, 1, 0, 1], np.float32)
    if jit and (signature[1].shape.rank is None or signature[2].shape.rank is None):
        # XLA compiles both branches of the run-time decision, one of them with mismatched shapes:
        # a clear error when traced, never a misread weight (spec.md 7)
        with pytest.raises(ValueError, match="known ranks"):
            f(t, x, w_anchor)
        return
    weights = [w_anchor] if known == "weight" else [w_anchor, np.repeat(w_anchor[:, None], 4, axis=1)]
    want = reference.ghm_c(x, t, w_anchor, bins=5).loss
    for w in weights:
        np.testing.assert_allclose(
            float(f(t, x, w)), want, **TOLERANCE["float32"], err_msg=f"weight of shape {w.shape}"
        )
    with pytest.raises(tf.errors.InvalidArgumentError):
        f(t, x, np.ones(5, np.float32))  # neither (6, 4) nor (6,)


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
    g = tf.function(
        lambda t, x: ghm_c_loss(t, x), input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None])]
    )
    with pytest.raises(ValueError, match="number of classes"):
        g.get_concrete_function()
    h = tf.function(lambda t, x: ghm_c_loss(t, x), input_signature=[tf.TensorSpec(None), tf.TensorSpec(None)])
    assert float(h(tf.zeros([2, 3]), tf.zeros([2, 3]))) == pytest.approx(math.log(2) / 30, rel=1e-6)


# ---------------------------------------------------------------- Keras integration


def test_config_round_trip_and_serialization():
    # every backend's JSON round trip: keras_backend_checks.the_config_is_json_and_round_trips_to_an_equal_config
    for loss in (
        GHMCLoss(bins=12, momentum=0.5, dialect="mmdet", reduction="sum", loss_weight=2.0),
        GHMRLoss(mu=0.1, bins=7, momentum=0.7, loss_weight=10.0),
    ):
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config() and clone.state is not loss.state
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


def test_weights_of_a_loss_with_other_bins_are_refused_with_both_numbers(tmp_path):
    # Found by fuzzing (issue 19): this raised a bare KeyError: 'ema' (Keras retries a failed object
    # with empty stores and reports the last error).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, :3] > 0).astype(np.float32)

    def model(bins):
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        m.compile(optimizer="sgd", loss=GHMCLoss(bins=bins, momentum=0.75))
        m.fit(x, y, epochs=1, verbose=0)
        return m

    path = tmp_path / "m.weights.h5"
    model(10).save_weights(path)
    other = model(30)
    with pytest.raises(ValueError, match=r"GHMCLoss\(bins=30\) cannot take an EMA state of 10 regions"):
        other.load_weights(path)
    state = other.loss.ema.numpy().copy()
    other.load_weights(path, skip_mismatch=True)  # the way out the message names
    np.testing.assert_array_equal(other.loss.ema.numpy(), state)


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
    proc = subprocess.run(
        [sys.executable, str(TESTS / "tf_distributed_check.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)])),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # bins = 1: GHM-C is the plain BCE, so one device and two replicas must train identically
    for key in ("fit_loss", "evaluate_loss", "weights"):
        np.testing.assert_allclose(out["two"][key], out["one"][key], rtol=1e-5, atol=1e-7, err_msg=key)
        np.testing.assert_allclose(out["two"][key], out["bce_two"][key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert out["outside_scope_error"] and "strategy.scope()" in out["outside_scope_error"]
    assert out["replica_states_equal"], "the EMA variable must hold one value on every replica"


# ---------------------------------------------------------------- GPU readiness, asked of the op registry


def _has_gpu_kernel(op) -> bool:
    """Is a GPU (or device-default) kernel registered for ``op`` with its dtype attributes? An op
    without one is placed on the host: a device-to-host copy on every call."""
    from tensorflow.python.framework import kernels

    for k in kernels.get_registered_kernels_for_op(op.type).kernel:
        if k.device_type not in ("GPU", "DEFAULT"):
            continue
        attrs = {}
        for c in k.constraint:
            try:
                value = op.get_attr(c.name)
            except ValueError:
                continue
            attrs[c.name] = (getattr(value, "as_datatype_enum", value), list(c.allowed_values.list.type))
        if all(not allowed or value in allowed for value, allowed in attrs.values()):
            return True
    return False


def _ops(graph):
    """The ops of a graph and of every function it calls (while-loop bodies, gradients)."""
    ops = list(graph.get_operations())
    for fn in getattr(graph, "_functions", {}).values():
        if hasattr(fn, "graph"):
            ops += _ops(fn.graph)
    return ops


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("shape", [[64, 8], [None, 8]], ids=["static", "unknown batch"])
def test_every_op_of_loss_and_gradient_has_a_gpu_kernel(loss, shape):
    # Found by reading the registry: DenseBincount with int64 counts has no GPU kernel (float32 and
    # int32 only), so on a GPU the histogram would run on the host with a copy every call. Checked
    # here without a GPU, on the graph tf.function builds (outside XLA, which compiles its own).
    obj = CLASSES[loss](momentum=0.75)

    @tf.function
    def step(t, x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = obj(t, x, sample_weight=w)
        return out, tape.gradient(out, x)

    spec = tf.TensorSpec(shape)
    graph = step.get_concrete_function(spec, spec, spec).graph
    messages = {op.name for op in _ops(graph) if op.type == "Const" and op.get_attr("dtype") == tf.string}
    host_only = sorted(
        {f"{op.type} ({op.name})" for op in _ops(graph) if op.name not in messages and not _has_gpu_kernel(op)}
    )  # an assertion's message strings live on the host
    assert not host_only, f"ops without a GPU kernel for their dtypes: {host_only}"


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


def test_region_counts_are_exact_in_chunks_of_any_size(monkeypatch):
    # Outside XLA the counts are int32 histograms (DenseBincount's GPU kernel type) of 2^30-entry
    # slices summed in int64; a shape unknown at trace time takes the chunked loop. Both must give
    # bincount's exact counts for every tail length, here with 1000-entry chunks.
    from impl_tf import _harmonize

    monkeypatch.setattr(_harmonize, "_BINCOUNT_CHUNK", 1000)
    for bins in (1, 10, 30):
        count = tf.function(
            lambda ind, bins=bins: _harmonize.region_counts(ind, bins),
            input_signature=[tf.TensorSpec([None], tf.int32)],
        )
        rng = np.random.default_rng(bins)
        for n in (0, 1, 999, 1000, 1001, 4099):
            ind = rng.integers(0, bins + 1, n).astype(np.int32)
            for got in (count(tf.constant(ind)), _harmonize.region_counts(tf.constant(ind), bins)):
                assert got.dtype == tf.int64
                np.testing.assert_array_equal(
                    got.numpy(), np.bincount(ind, minlength=bins + 1), err_msg=f"bins={bins}, n={n}"
                )


@pytest.mark.slow
def test_xla_sum_of_two_to_the_24_terms_is_accurate():
    n = (1 << 24) + 3
    x = np.zeros((n, 1), np.float32)
    x[:5] = 4.0
    t = np.zeros_like(x)
    expected = (math.log(2) + math.log1p(math.exp(4.0))) / 30
    f = tf.function(lambda t, x: ghm_c_loss(t, x), jit_compile=True)
    np.testing.assert_allclose(float(f(t, x)), expected, **TOLERANCE["huge_sum"])
