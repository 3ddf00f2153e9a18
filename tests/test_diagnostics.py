"""Diagnostics (spec.md 13) of impl_torch, impl_tf and impl_jax against the reference, written once
for every backend (tests/backends.py): counts, N and non-empty regions exactly; density, beta,
gradient masses, shares and the positive fraction to float32 tolerance; the EMA's density over
calls; empty and poisoned calls. Inputs keep g clear of region edges (ghm_conformance's "clear"
entries). Compilation without host syncs is tested per framework at the end of the file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from backends import backend_params
from ghm_conformance import cases as cs
from tolerances import TOLERANCE

REF = {"c": reference.ghm_c, "r": reference.ghm_r}
KINDS = ["c", "r"]
DIALECTS = ["paper", "mmdet"]
INTEGER_FIELDS = ("counts", "valid", "nonempty")
FLOAT_FIELDS = ("density", "beta", "grad_mass", "plain_mass", "positive_fraction", "grad_share", "plain_share")


@pytest.fixture(params=backend_params(), scope="module")
def backend(request):
    cls, device = request.param
    return cls(device)


EPS32 = float(np.finfo(np.float32).eps)


def assert_diagnostics(
    got: dict, want: reference.Diagnostics, what: str = "", *, loss_weight: float = 1.0, reduction: str = "mean"
) -> None:
    """Integers exactly; floats to float32 tolerance (NaN where the reference has NaN).

    The masses also allow 4 float32 ulps per entry of the numbers they sum, as the conformance kit
    does for gradients (spec.md 9): g = |p - t| is formed from p rounded to float32, so near p = t
    it cancels (pred = 17, target = 1: 1 - sigmoid(17) = 4e-8 in float64, 0 in float32), which
    is rounding, not error: plain_mass_j may be off by 4 eps32 c R_j, grad_mass_j by |lambda| beta_j
    times that. A share (mass / total) may be off by twice the total slack over the total."""
    for name in INTEGER_FIELDS:
        np.testing.assert_array_equal(got[name], getattr(want, name), err_msg=f"{what}: {name}")
        assert np.issubdtype(got[name].dtype, np.integer), f"{what}: {name} must be an integer, got {got[name].dtype}"
    c = 1.0 / max(want.valid, 1) if reduction == "mean" else 1.0
    slack = {"plain_mass": 4 * EPS32 * c * want.counts}
    slack["grad_mass"] = abs(loss_weight) * np.nan_to_num(want.beta) * slack["plain_mass"]
    for kind in ("plain", "grad"):
        total = getattr(want, f"{kind}_mass").sum()
        share_slack = 2 * slack[f"{kind}_mass"].sum() / total if total > 0 else 0.0
        slack[f"{kind}_share"] = np.full(want.counts.shape, share_slack)
    for name in FLOAT_FIELDS:
        value, expected = np.asarray(got[name], np.float64), np.asarray(getattr(want, name), np.float64)
        tol = TOLERANCE["float32"]["atol"] + TOLERANCE["float32"]["rtol"] * np.abs(expected) + slack.get(name, 0.0)
        same_nan = np.isnan(value) == np.isnan(expected)
        ok = same_nan & (np.isnan(expected) | (np.abs(value - expected) <= tol))
        assert np.all(ok), (
            f"{what}: {name}: got {value[~ok] if value.ndim else value}, want "
            f"{expected[~ok] if expected.ndim else expected} (tolerance {tol})"
        )


# ---------------------------------------------------------------- one call, against the reference


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=10)
@given(data=st.data())
def test_function_diagnostics_match_the_reference(backend, kind, dialect, data):
    case = data.draw(cs.single_call_case(kind, masked=True, entries="clear", large=False), label="case")
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
    loss_weight = data.draw(st.sampled_from([1.0, -0.5, 10.0]), label="loss_weight")
    c = case.calls[0]
    kw = dict(bins=case.bins, dialect=dialect, reduction=reduction, loss_weight=loss_weight, **case.hyper)
    got, d = backend.diagnose(kind, c.pred, c.target, c.label_weight, **kw)
    ref = REF[kind](c.pred, c.target, c.label_weight, **kw)
    assert_diagnostics(
        d, ref.diagnostics, f"{kind} {dialect} {reduction}", loss_weight=loss_weight, reduction=reduction
    )
    np.testing.assert_allclose(got.loss, ref.loss, **TOLERANCE["float32"], err_msg="the loss, diagnostics on")


# ---------------------------------------------------------------- the EMA: density and beta over calls


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=5)
@given(data=st.data())
def test_loss_object_diagnostics_follow_the_ema(backend, kind, dialect, data):
    # successive calls revisiting some regions, some of them fully masked (density: the state as it stands)
    case = data.draw(cs.momentum_case(kind, empty_calls=True), label="case")
    hyper = dict(bins=case.bins, momentum=case.momentum, dialect=dialect, **case.hyper)
    obj, state = backend.loss(kind, diagnostics=True, **hyper), None
    for k, c in enumerate(case.calls):
        _, d = backend.diagnose(obj, c.pred, c.target, c.label_weight)
        ref = REF[kind](c.pred, c.target, c.label_weight, state=state, **hyper)
        state = ref.state
        assert_diagnostics(d, ref.diagnostics, f"{kind} {dialect}, call {k}")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("per_anchor_weight", [False, True])
def test_class_index_targets_count_one_positive_per_valid_foreground_anchor(backend, dialect, per_anchor_weight):
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(12, 3)).astype(np.float32) * 2
    labels = np.array([0, 3, 2, 1, 3, 0, 2, 2, 3, 1, 0, 3])  # 3 = background
    lw = (rng.random(12) < 0.75).astype(np.float32)
    lw = lw if per_anchor_weight else np.repeat(lw[:, None], 3, axis=1)
    g = cs.gradient_norm("c", pred, (labels[:, None] == np.arange(3)).astype(np.float64), None)
    assert not cs.near_edge(g, 10).any()
    obj = backend.loss("c", bins=10, momentum=0.5, dialect=dialect, diagnostics=True)
    _, d = backend.diagnose(obj, pred, labels, lw)
    ref = reference.ghm_c(pred, labels, lw, bins=10, momentum=0.5, dialect=dialect)
    assert_diagnostics(d, ref.diagnostics, "class-index targets")
    anchors = lw > 0 if per_anchor_weight else lw[:, 0] > 0
    assert ref.diagnostics.positive_fraction == np.count_nonzero(anchors & (labels < 3)) / (3 * anchors.sum())


# ---------------------------------------------------------------- calls that harmonize nothing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_empty_and_poisoned_calls(backend, kind, dialect):
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(8, 3)).astype(np.float32), (rng.random((8, 3)) < 0.3).astype(np.float32)
    obj = backend.loss(kind, bins=5, momentum=0.75, dialect=dialect, diagnostics=True)
    backend.diagnose(obj, x, t)  # a state to keep
    state = backend.state(obj)[0]
    _, empty = backend.diagnose(obj, x, t, np.zeros_like(x))
    assert not empty["counts"].any() and empty["valid"] == 0 and empty["nonempty"] == 0
    for name in ("beta", "grad_mass", "plain_mass", "grad_share", "plain_share"):
        assert not np.asarray(empty[name]).any(), f"an empty call reports {name} 0, got {empty[name]}"
    np.testing.assert_allclose(
        empty["density"], state, **TOLERANCE["ema_state"], err_msg="an empty call reports the state as it stands"
    )
    assert empty["positive_fraction"] == 0.0 if kind == "c" else np.isnan(empty["positive_fraction"])
    poisoned_x = x.copy()
    poisoned_x[2, 1] = np.nan
    _, poisoned = backend.diagnose(obj, poisoned_x, t)
    assert not poisoned["counts"].any() and poisoned["valid"] == 0 and poisoned["nonempty"] == 0, poisoned
    for name in FLOAT_FIELDS:
        assert np.isnan(poisoned[name]).all(), f"a poisoned call reports {name} NaN, got {poisoned[name]}"
    np.testing.assert_array_equal(backend.state(obj)[0], state, err_msg="the state stays")


def test_mmdet_accumulator_regions_empty_in_a_call_keep_their_density(backend):
    # spec.md 13: density is the accumulator after the update: a region empty in this call keeps
    # its value (mmdet), and its beta is 0. Region 15 of 30 (g = 1/2 exactly), then region 0.
    obj = backend.loss("c", bins=30, momentum=0.5, dialect="mmdet", diagnostics=True)
    z = np.zeros((2, 3), np.float32)
    backend.diagnose(obj, z, z)
    _, d = backend.diagnose(obj, np.array([5.0, -5.0], np.float32), np.array([1.0, 0.0], np.float32))
    want = np.zeros(30)
    want[15], want[0] = 3.0, 1.0
    np.testing.assert_allclose(d["density"], want, **TOLERANCE["float32"])
    assert d["beta"][15] == 0 and d["beta"][0] == pytest.approx(2.0, rel=1e-6)


# ---------------------------------------------------------------- torch: compiled, buffers, off by default


def _torch_batches(n: int, seed: int = 0, shape=(40, 3)):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, t = rng.normal(size=shape).astype(np.float32) * 2, (rng.random(shape) < 0.2).astype(np.float32)
        lw = (rng.random(shape[:-1]) < 0.8).astype(np.float32)
        out.append((x, t, lw))
    return out


@pytest.mark.parametrize("kind, dialect", [("c", "paper"), ("r", "mmdet")])
def test_torch_compiled_fullgraph_diagnostics_equal_eager_and_the_reference(kind, dialect):
    # fullgraph: a host sync (.item(), a branch on a value) in the diagnostics would break the graph and raise
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss, GHMRLoss, ghm_c_loss, ghm_r_loss

    cls, fn = (GHMCLoss, ghm_c_loss) if kind == "c" else (GHMRLoss, ghm_r_loss)
    torch._dynamo.reset()
    hyper = dict(bins=10, momentum=0.75, dialect=dialect)
    eager, module = cls(diagnostics=True, **hyper), cls(diagnostics=True, **hyper)
    compiled = torch.compile(module, fullgraph=True)
    compiled_fn = torch.compile(lambda x, t, w: fn(x, t, w, bins=10, dialect=dialect, diagnostics=True), fullgraph=True)
    state = None
    for k, (x, t, lw) in enumerate(_torch_batches(3, seed=5)):
        if k == 2:
            x[4, 0] = np.nan  # poisoned: counted in the compiled code's poison slot
        args = [torch.tensor(a) for a in (x, t, lw)]
        eager(*args)
        compiled(*args)
        ref = REF[kind](x, t, lw, state=state, **hyper)
        state = ref.state
        got = module.last_diagnostics()
        for name, a, b in zip(got._fields, got, eager.last_diagnostics()):
            torch.testing.assert_close(
                a,
                b,
                **TOLERANCE["compiled_vs_eager"],
                equal_nan=True,
                msg=lambda m, k=k, name=name: f"call {k}, {name}: compiled vs eager: {m}",
            )
        assert_diagnostics(
            {
                **{f: v.numpy() for f, v in zip(got._fields, got)},
                "grad_share": got.grad_share.numpy(),
                "plain_share": got.plain_share.numpy(),
            },
            ref.diagnostics,
            f"compiled, call {k}",
        )
        _, d = compiled_fn(*args)
        _, d_eager = fn(*args, bins=10, dialect=dialect, diagnostics=True)
        for name, a, b in zip(d._fields, d, d_eager):
            torch.testing.assert_close(
                a,
                b,
                **TOLERANCE["compiled_vs_eager"],
                equal_nan=True,
                msg=lambda m, k=k, name=name: f"stateless, call {k}, {name}: {m}",
            )


def test_torch_diagnostics_are_off_by_default_and_leave_the_loss_unchanged():
    """diagnostics=True takes the pure-torch path (its hook lives there): it must give that
    path's loss, gradient and EMA exactly. (On float32 CPU inputs a plain call takes the fused
    kernels instead; tests/test_native.py holds the two paths to each other.)"""
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss, ghm_c_loss
    from impl_torch._native import use_native

    plain = GHMCLoss(momentum=0.75)
    assert not any(name.startswith("diagnostics_") for name, _ in plain.named_buffers())
    with pytest.raises(RuntimeError, match="diagnostics=True"):
        plain.last_diagnostics()
    on = GHMCLoss(momentum=0.75, diagnostics=True)
    for x, t, lw in _torch_batches(2):
        args = [torch.tensor(a) for a in (x, t, lw)]
        xa, xb = args[0].clone().requires_grad_(), args[0].clone().requires_grad_()
        with use_native(False):
            a = plain(xa, *args[1:])
        b = on(xb, *args[1:])
        a.backward(), b.backward()
        assert torch.equal(a, b) and torch.equal(xa.grad, xb.grad), "diagnostics must not change the loss"
        assert torch.equal(plain.ema, on.ema)
        with use_native(False):
            loss_only = ghm_c_loss(*args)
        loss, _ = ghm_c_loss(*args, diagnostics=True)
        assert isinstance(loss_only, torch.Tensor) and torch.equal(loss, loss_only)


def test_torch_diagnostic_buffers_record_eval_calls_stay_float32_and_out_of_the_state_dict():
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss

    loss = GHMCLoss(bins=30, momentum=0.5, diagnostics=True).half()  # a cast must not make a density float16
    assert all(b.dtype in (torch.float32, torch.int64) for n, b in loss.named_buffers() if n.startswith("diagnostics_"))
    assert set(loss.state_dict()) == {"ema", "ema_initialized"}, "diagnostics are not state to save"
    z = torch.zeros(2, 3)
    loss(z, z)
    loss.eval()
    loss(torch.full((2, 1), 5.0), torch.ones(2, 1))  # g = sigmoid(-5): region 0; eval: the EMA stays
    d = loss.last_diagnostics()
    assert d.counts[0] == 2 and d.counts[15] == 0, "an eval() call is recorded"
    assert loss.ema[15] == 6 and loss.ema[0] == 0, "but it does not move the EMA"
    assert d.density[0] == 1.0 and d.density[15] == 3.0, "density: the S the eval call's weights used"
    d.counts[0] = 99
    assert loss.last_diagnostics().counts[0] == 2, "last_diagnostics returns copies"


def test_torch_cuda_diagnostics_never_sync():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: a synchronising CUDA call raises under set_sync_debug_mode('error')")
    from impl_torch import GHMCLoss, GHMRLoss

    for cls in (GHMCLoss, GHMRLoss):
        loss = cls(momentum=0.75, diagnostics=True).cuda()
        x, t, lw = (torch.tensor(a, device="cuda") for a in _torch_batches(1)[0])
        labels = torch.randint(0, 4, (40,), device="cuda")
        loss(x, t, lw)  # warm-up: lazy initialisation may sync once
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss(x.requires_grad_(), t, lw).backward()
            d = loss.last_diagnostics()
            if cls is GHMCLoss:
                loss(x, labels, lw)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert int(d.valid) > 0


# ---------------------------------------------------------------- JAX: jit, scan, vmap, no host round trip


def _clear_steps(kind: str, n: int, shape=(48, 4), seed: int = 0):
    """n batches, every g clear of a region edge of 10 bins, some entries masked (GHM-C: some soft
    targets, which are not positives)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        while True:
            if kind == "c":
                x = (rng.normal(size=shape) * 3).astype(np.float32)
                t = (rng.random(shape) < 0.2).astype(np.float32)
                t[0, :2] = 0.5
                g = cs.gradient_norm("c", x, t, None)
            else:
                t = rng.normal(size=shape).astype(np.float32)
                x = (t + rng.normal(size=shape) * 0.05).astype(np.float32)
                g = cs.gradient_norm("r", x, t, 0.02)
            if not cs.near_edge(g, 10).any():
                break
        out.append((x, t, (rng.random(shape) < 0.8).astype(np.float32)))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_jax_jit_scan_diagnostics_equal_the_reference_without_a_host_round_trip(kind):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from impl_jax import ghm_c_loss, ghm_r_loss, init_state

    fn = ghm_c_loss if kind == "c" else ghm_r_loss
    steps = _clear_steps(kind, 3)
    xs, ts, lws = (jnp.stack([s[i] for s in steps]) for i in range(3))
    hyper = dict(bins=10, momentum=0.75, dialect="paper", loss_weight=2.0)

    def step(state, batch):
        x, t, lw = batch
        (_loss, (new_state, d)), _grad = jax.value_and_grad(
            lambda x: (lambda out: (out[0], out[1:]))(fn(x, t, lw, state=state, diagnostics=True, **hyper)),
            has_aux=True,
        )(x)
        return new_state, d

    run = jax.jit(lambda s, b: jax.lax.scan(step, s, b))
    jaxpr = str(jax.make_jaxpr(run)(init_state(10), (xs, ts, lws)))
    for primitive in ("callback", "host", "outside"):
        assert primitive not in jaxpr, f"the traced step contains a {primitive!r} primitive"
    args = jax.device_put((init_state(10), (xs, ts, lws)))
    run(*args)  # compile outside the guard
    with jax.transfer_guard("disallow"):
        _, d = run(*args)
    state = None
    for k, (x, t, lw) in enumerate(steps):
        ref = REF[kind](x, t, lw, state=state, **hyper)
        state = ref.state
        got = {name: np.asarray(getattr(d, name)[k]) for name in d._fields}
        got.update(grad_share=np.asarray(d.grad_share[k]), plain_share=np.asarray(d.plain_share[k]))
        assert_diagnostics(got, ref.diagnostics, f"jax scan step {k}", loss_weight=hyper["loss_weight"])


def test_jax_vmap_gives_each_slice_its_own_diagnostics():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from impl_jax import ghm_c_loss

    steps = _clear_steps("c", 3, seed=2)
    xs, ts, lws = (jnp.stack([s[i] for s in steps]) for i in range(3))
    d = jax.jit(jax.vmap(lambda x, t, lw: ghm_c_loss(x, t, lw, bins=10, diagnostics=True)[2]))(xs, ts, lws)
    assert d.counts.shape == (3, 10) and d.valid.shape == (3,)
    for k, (x, t, lw) in enumerate(steps):
        ref = reference.ghm_c(x, t, lw, bins=10).diagnostics
        np.testing.assert_array_equal(d.counts[k], ref.counts)
        np.testing.assert_allclose(d.grad_share[k], ref.grad_share, **TOLERANCE["float32"])


# ---------------------------------------------------------------- TensorFlow: XLA


@pytest.mark.parametrize("kind", KINDS)
def test_tf_xla_diagnostics_equal_the_reference(kind):
    tf = pytest.importorskip("tensorflow")
    import impl_tf

    fn = impl_tf.ghm_c_loss if kind == "c" else impl_tf.ghm_r_loss
    stateless = tf.function(
        lambda t, x, w: fn(t, x, w, bins=10, dialect="mmdet", diagnostics=True)[1], jit_compile=True
    )
    loss = (impl_tf.GHMCLoss if kind == "c" else impl_tf.GHMRLoss)(bins=10, momentum=0.75, diagnostics=True)
    stateful = tf.function(loss.__call__, jit_compile=True)
    state = None
    for k, (x, t, lw) in enumerate(_clear_steps(kind, 2, seed=3)):
        d = stateless(t, x, lw)
        stateful(t, x, lw)
        got = {name: np.asarray(v) for name, v in zip(d._fields, d)}
        got.update(grad_share=np.asarray(d.grad_share), plain_share=np.asarray(d.plain_share))
        assert_diagnostics(got, REF[kind](x, t, lw, bins=10, dialect="mmdet").diagnostics, f"XLA function, call {k}")
        ref = REF[kind](x, t, lw, bins=10, momentum=0.75, state=state)
        state = ref.state
        d = loss.last_diagnostics()
        got = {name: np.asarray(v) for name, v in zip(d._fields, d)}
        got.update(grad_share=np.asarray(d.grad_share), plain_share=np.asarray(d.plain_share))
        assert_diagnostics(got, ref.diagnostics, f"XLA Keras loss, call {k}")
