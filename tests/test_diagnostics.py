"""Diagnostics (spec.md 13) of impl_torch (impl_tf and impl_jax to follow) against the reference,
written for every backend (tests/backends.py): counts, N and non-empty regions exactly; density, beta,
gradient masses, shares and the positive fraction to float32 tolerance; the EMA's density over
calls; empty and poisoned calls. Inputs keep g clear of region edges (ghm_conformance's "clear"
entries). Compilation without host syncs is tested per framework at the end of the file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from ghm_conformance import cases as cs

from backends import backend_params
from tolerances import TOLERANCE

REF = {"c": reference.ghm_c, "r": reference.ghm_r}
KINDS = ["c", "r"]
DIALECTS = ["paper", "mmdet"]
INTEGER_FIELDS = ("counts", "valid", "nonempty")
FLOAT_FIELDS = ("density", "beta", "grad_mass", "plain_mass", "positive_fraction", "grad_share", "plain_share")


@pytest.fixture(params=[p for p in backend_params() if p.id.startswith("torch")], scope="module")
def backend(request):
    cls, device = request.param
    return cls(device)


def assert_diagnostics(got: dict, want: reference.Diagnostics, what: str = "") -> None:
    """Integers exactly; floats to float32 tolerance (NaN where the reference has NaN). A share is
    compared as the mass it stands for, share x the reference's total mass: when every gradient
    norm is below float32's resolution (pred = 17, target = 1: 1 - sigmoid(17) = 4e-8 in float64,
    0 in float32) the masses agree to within it, and their ratio is 0/0 on one side only."""
    for name in INTEGER_FIELDS:
        np.testing.assert_array_equal(got[name], getattr(want, name), err_msg=f"{what}: {name}")
        assert np.issubdtype(got[name].dtype, np.integer), f"{what}: {name} must be an integer, got {got[name].dtype}"
    for name in FLOAT_FIELDS:
        value, expected = np.asarray(got[name], np.float64), np.asarray(getattr(want, name), np.float64)
        if name.endswith("_share"):
            total = getattr(want, name.replace("_share", "_mass")).sum()
            value, expected = value * total, expected * total
        np.testing.assert_allclose(value, expected, **TOLERANCE["float32"], err_msg=f"{what}: {name}")


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
    assert_diagnostics(d, ref.diagnostics, f"{kind} {dialect} {reduction}")
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
    np.testing.assert_allclose(empty["density"], state, **TOLERANCE["ema_state"],
                               err_msg="an empty call reports the state as it stands")
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
    compiled_fn = torch.compile(lambda x, t, w: fn(x, t, w, bins=10, dialect=dialect, diagnostics=True),
                                fullgraph=True)
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
            torch.testing.assert_close(a, b, **TOLERANCE["compiled_vs_eager"], equal_nan=True,
                                       msg=lambda m: f"call {k}, {name}: compiled vs eager: {m}")
        assert_diagnostics({**{f: v.numpy() for f, v in zip(got._fields, got)}, "grad_share": got.grad_share.numpy(),
                            "plain_share": got.plain_share.numpy()}, ref.diagnostics, f"compiled, call {k}")
        _, d = compiled_fn(*args)
        _, d_eager = fn(*args, bins=10, dialect=dialect, diagnostics=True)
        for name, a, b in zip(d._fields, d, d_eager):
            torch.testing.assert_close(a, b, **TOLERANCE["compiled_vs_eager"], equal_nan=True,
                                       msg=lambda m: f"stateless, call {k}, {name}: {m}")


def test_torch_diagnostics_are_off_by_default_and_leave_the_loss_unchanged():
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss, ghm_c_loss

    plain = GHMCLoss(momentum=0.75)
    assert not any(name.startswith("diagnostics_") for name, _ in plain.named_buffers())
    with pytest.raises(RuntimeError, match="diagnostics=True"):
        plain.last_diagnostics()
    on = GHMCLoss(momentum=0.75, diagnostics=True)
    for x, t, lw in _torch_batches(2):
        args = [torch.tensor(a) for a in (x, t, lw)]
        xa, xb = args[0].clone().requires_grad_(), args[0].clone().requires_grad_()
        a, b = plain(xa, *args[1:]), on(xb, *args[1:])
        a.backward(), b.backward()
        assert torch.equal(a, b) and torch.equal(xa.grad, xb.grad), "diagnostics must not change the loss"
        assert torch.equal(plain.ema, on.ema)
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

