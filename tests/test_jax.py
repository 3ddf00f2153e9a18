"""impl_jax as Flax/optax training loops use it (spec.md 12): under ``jax.jit`` with the EMA state
carried through ``lax.scan``, under ``jax.vmap``, and without a host round trip. Values against
the reference; the backend-independent properties are in test_losses.py (the ``jax`` backend)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import reference  # noqa: E402
from ghm_conformance import cases as cs  # noqa: E402
from impl_jax import (  # noqa: E402
    GHMState,
    _harmonize,
    ghm_c_loss,
    ghm_r_loss,
    init_state,
)
from tolerances import TOLERANCE  # noqa: E402


def close(got, want, what: str = ""):
    np.testing.assert_allclose(got, want, **TOLERANCE["float32"], err_msg=what)


FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
REF = {"c": reference.ghm_c, "r": reference.ghm_r}


def _steps(kind: str, n_steps: int, shape=(64, 5), seed=0):
    """n_steps batches, every g clear of a region edge of 10 bins, some entries masked."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        while True:
            if kind == "c":
                x = (rng.normal(size=shape) * 3).astype(np.float32)
                t = (rng.random(shape) < 0.2).astype(np.float32)
                g = cs.gradient_norm("c", x, t, None)
            else:
                t = rng.normal(size=shape).astype(np.float32)
                x = (t + rng.normal(size=shape) * 0.05).astype(np.float32)
                g = cs.gradient_norm("r", x, t, 0.02)
            if not cs.near_edge(g, 10).any():
                break
        lw = (rng.random(shape) < 0.8).astype(np.float32)
        out.append((x, t, lw))
    return out


@pytest.mark.parametrize("kind", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_jit_scan_carries_the_ema_state_as_the_reference_does(kind, dialect):
    # a training loop: the state goes in and out of a jitted step, here all steps in one lax.scan
    steps = _steps(kind, 4)
    xs, ts, lws = (jnp.stack([s[i] for s in steps]) for i in range(3))
    hyper = dict(bins=10, momentum=0.75, dialect=dialect)

    def step(state, batch):
        x, t, lw = batch
        (loss, new_state), grad = jax.value_and_grad(
            lambda x: FUNCTIONS[kind](x, t, lw, state=state, **hyper), has_aux=True
        )(x)
        return new_state, (loss, grad)

    final, (losses, grads) = jax.jit(lambda s, b: jax.lax.scan(step, s, b))(init_state(10), (xs, ts, lws))
    ref_state = None
    for i, (x, t, lw) in enumerate(steps):
        ref = REF[kind](x, t, lw, state=ref_state, **hyper)
        ref_state = ref.state
        close(np.asarray(losses[i], np.float64), ref.loss, what=f"loss at step {i}")
        close(np.asarray(grads[i], np.float64), ref.grad, what=f"gradient at step {i}")
    close(np.asarray(final.ema, np.float64), ref_state, what="EMA state after the scan")
    assert bool(final.initialized)


@pytest.mark.parametrize("kind", ["c", "r"])
def test_vmap_computes_one_independent_loss_per_slice(kind):
    # vmap over a batch of problems: each slice has its own histogram and, mapped too, its own state
    steps = _steps(kind, 3, seed=1)
    xs, ts, lws = (jnp.stack([s[i] for s in steps]) for i in range(3))
    states = jax.tree_util.tree_map(lambda a: jnp.stack([a] * 3), init_state(10))
    f = jax.vmap(lambda x, t, lw, s: FUNCTIONS[kind](x, t, lw, bins=10, momentum=0.5, state=s))
    losses, new_states = jax.jit(f)(xs, ts, lws, states)
    grads = jax.vmap(jax.grad(lambda x, t, lw: FUNCTIONS[kind](x, t, lw, bins=10)[0]))(xs, ts, lws)
    for i, (x, t, lw) in enumerate(steps):
        ref = REF[kind](x, t, lw, bins=10, momentum=0.5)
        close(np.asarray(losses[i], np.float64), ref.loss, what=f"loss of slice {i}")
        close(np.asarray(new_states.ema[i], np.float64), ref.state, what=f"state of slice {i}")
        close(np.asarray(grads[i], np.float64), REF[kind](x, t, lw, bins=10).grad, what=f"gradient of slice {i}")


@pytest.mark.parametrize("kind", ["c", "r"])
def test_a_jitted_step_has_no_host_round_trip(kind):
    # no callback in the program, and the compiled step runs with device-to-host transfers refused
    x, t, lw = _steps(kind, 1)[0]

    def step(x, t, lw, state):
        return jax.value_and_grad(
            lambda x: FUNCTIONS[kind](x, t, lw, bins=10, momentum=0.75, state=state), has_aux=True
        )(x)

    jaxpr = str(jax.make_jaxpr(step)(x, t, lw, init_state(10)))
    for primitive in ("callback", "host", "outside"):
        assert primitive not in jaxpr, f"the traced step contains a {primitive!r} primitive"
    args = jax.device_put((x, t, lw, init_state(10)))
    compiled = jax.jit(step)
    compiled(*args)  # compile outside the guard
    with jax.transfer_guard("disallow"):
        (loss, state), _grad = compiled(*args)
    assert np.isfinite(float(loss)) and bool(state.initialized)


def test_counts_are_int32_in_jax_default_mode_and_int64_with_x64():
    ind = jnp.zeros((3,), jnp.int32)
    assert _harmonize.region_counts(ind, 4).dtype == jnp.int32
    with jax.enable_x64(True):
        assert _harmonize.region_counts(jnp.zeros((3,), jnp.int32), 4).dtype == jnp.int64


@pytest.mark.parametrize("kind", ["c", "r"])
def test_a_call_past_int32_counts_is_refused_when_traced_in_32_bit_mode(kind):
    # 2^31 entries would wrap an int32 count: refused from the static shape (traced abstractly
    # here, nothing allocated), and traced fine with x64's int64 counts
    big = jax.ShapeDtypeStruct((1 << 16, 1 << 15), jnp.float32)
    with pytest.raises(ValueError, match="jax_enable_x64"):
        jax.eval_shape(lambda x: FUNCTIONS[kind](x, x, bins=10)[0], big)
    with jax.enable_x64(True):
        assert jax.eval_shape(lambda x: FUNCTIONS[kind](x, x, bins=10)[0], big).shape == ()


@pytest.mark.parametrize("kind", ["c", "r"])
def test_the_state_is_a_pytree_that_round_trips_and_is_checked(kind):
    state = init_state(7)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    assert isinstance(jax.tree_util.tree_unflatten(treedef, leaves), GHMState)
    x, t, lw = _steps(kind, 1)[0]
    with pytest.raises(ValueError, match=r"state.ema must have shape \(10,\)"):
        FUNCTIONS[kind](x, t, lw, bins=10, momentum=0.5, state=state)
    with pytest.raises(ValueError, match="momentum == 0"):
        FUNCTIONS[kind](x, t, lw, bins=10, state=init_state(10))
    with pytest.raises(ValueError, match="momentum"):
        FUNCTIONS[kind](x, t, lw, bins=10, momentum=1.0)


@pytest.mark.parametrize("kind", ["c", "r"])
def test_a_poisoned_batch_under_jit_gives_nan_and_keeps_the_state(kind):
    (x, t, lw), (x2, t2, lw2) = _steps(kind, 2, seed=3)
    f = jax.jit(lambda x, t, lw, s: FUNCTIONS[kind](x, t, lw, bins=10, momentum=0.75, state=s))
    _, state = f(x, t, lw, init_state(10))
    x2 = x2.copy()
    x2[np.argmax(lw2 > 0)] = np.nan  # in a valid entry
    loss, after = f(x2, t2, lw2, state)
    assert np.isnan(float(loss)), "a NaN logit in a valid entry must poison the loss"
    np.testing.assert_array_equal(
        np.asarray(after.ema), np.asarray(state.ema), err_msg="a poisoned batch must leave the EMA state as it was"
    )


@pytest.mark.parametrize("kind", ["c", "r"])
def test_a_state_of_the_wrong_dtype_is_refused_not_truncated(kind):
    # issue 28: an integer ema was accepted and truncated at every call
    x, t, lw = _steps(kind, 1)[0]
    bad = {
        "integer ema": GHMState(jnp.zeros(10, jnp.int32), jnp.zeros((), bool)),
        "float16 ema": GHMState(jnp.zeros(10, jnp.float16), jnp.zeros((), bool)),
        "integer initialized": GHMState(jnp.zeros(10, jnp.float32), jnp.zeros((), jnp.int32)),
        "initialized per region": GHMState(jnp.zeros(10, jnp.float32), jnp.zeros(10, bool)),
    }
    for why, state in bad.items():
        with pytest.raises(TypeError, match=r"state\.(ema|initialized) must be"):
            FUNCTIONS[kind](x, t, lw, bins=10, momentum=0.5, state=state)
            pytest.fail(f"{why}: accepted")
    with jax.enable_x64(True):  # float64, where it exists, is a state too
        _, state = FUNCTIONS[kind](
            x, t, lw, bins=10, momentum=0.5, state=GHMState(jnp.zeros(10, jnp.float64), jnp.zeros((), bool))
        )
        assert state.ema.dtype == jnp.float64


@pytest.mark.parametrize("kind", ["c", "r"])
def test_hyper_parameters_are_static_and_the_error_says_how_to_pass_them(kind):
    # issue 28: momentum=jnp.float32(0.5) was "not a real number in [0, 1)"; jax.jit(ghm_c_loss) said
    # "bins must be an integer >= 1, got JitTracer"
    import functools

    x, t, lw = _steps(kind, 1)[0]
    f = FUNCTIONS[kind]
    with pytest.raises(ValueError, match=r"momentum must be a Python number, got a JAX array.*static"):
        f(x, t, lw, bins=10, momentum=jnp.float32(0.5))
    with pytest.raises(ValueError, match=r"bins must be a Python number, got a traced value.*static_argnames"):
        jax.jit(f)(x, t, lw, bins=10)
    if kind == "r":
        with pytest.raises(ValueError, match=r"mu must be a Python number.*functools\.partial"):
            jax.jit(lambda x, t, mu: f(x, t, mu=mu))(x, t, 0.5)
    want = f(x, t, lw, bins=10, momentum=0.5)[0]
    by_name = jax.jit(f, static_argnames=("bins", "momentum"))(x, t, lw, bins=10, momentum=0.5)[0]
    bound = jax.jit(functools.partial(f, bins=10, momentum=0.5))(x, t, lw)[0]
    close(np.asarray(by_name), np.asarray(want), "static_argnames")
    close(np.asarray(bound), np.asarray(want), "functools.partial")


def test_64_bit_host_labels_and_weights_are_read_before_32_bit_jax_narrows_them():
    # JAX's default mode makes int64 int32 (2^32 + 1 -> 1) and float64 float32 (1e-50 -> 0) on entry:
    # called with NumPy arrays, the loss decides what they mean on the host first
    assert not jax.config.jax_enable_x64
    x = np.zeros((3, 2), np.float32)
    for labels in (
        np.array([0, 2**32 + 1, 1], np.int64),
        np.array([0, 2**32 + 1, 1], np.uint64),
        np.array([[0, 1], [2**32, 0], [1, 0]], np.int64),
    ):
        loss, state = ghm_c_loss(x, labels, bins=10, momentum=0.5)
        assert np.isnan(float(loss)) and not bool(state.initialized), f"{labels.dtype} {labels.tolist()} wrapped"
    ok = np.array([0, 2, 1], np.int64)
    close(float(ghm_c_loss(x, ok, bins=10)[0]), reference.ghm_c(x, ok, bins=10).loss)
    x = np.array([[0.0, 3.0], [1.0, -2.0], [0.5, 4.0]], np.float32)
    t = np.array([[0, 1], [1, 0], [0, 0]], np.float32)
    for weights in (np.array([[1e-50, 1], [1, 1], [0, 1]]), np.array([[2**32, 1], [1, 1], [0, 1]], np.int64)):
        got = float(ghm_c_loss(x, t, weights, bins=10, reduction="sum")[0])
        want = reference.ghm_c(x, t, weights, bins=10, reduction="sum").loss
        assert want != reference.ghm_c(x, t, np.where(weights == 1, 1, 0), bins=10, reduction="sum").loss
        close(got, want, f"{weights.dtype} weights: the first entry is valid")
