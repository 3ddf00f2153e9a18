"""What only impl_torch has: torch.compile (fullgraph, dynamic), state_dict, eval(), module dtype
casts, autocast. Everything shared with impl_tf is in test_losses.py."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reference  # noqa: E402
from conftest import assert_catalogue_passes, examples  # noqa: E402
from ghm_conformance import from_numpy_function, run_catalogue  # noqa: E402
from impl_torch import GHMCLoss, GHMRLoss, ghm_c_loss, ghm_r_loss  # noqa: E402
from reference import equations  # noqa: E402
from tolerances import TOLERANCE  # noqa: E402

CLASSES = {"c": GHMCLoss, "r": GHMRLoss}
FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
REF = {"c": reference.ghm_c, "r": reference.ghm_r}


def _batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (
            torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32),
            torch.tensor(rng.integers(0, 2, size=(16, 3)), dtype=torch.float32),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("loss", ["c", "r"])
def test_functional_form_passes_catalogue_without_momentum(loss):
    def fn(pred, target, lw, **kw):
        x = torch.tensor(pred, requires_grad=True)
        out = FUNCTIONS[loss](x, torch.tensor(target), torch.tensor(lw), dialect="mmdet", **kw)
        (g,) = torch.autograd.grad(out, x)
        return out.item(), g.numpy()

    report = run_catalogue(from_numpy_function(fn), loss, dialect="mmdet", max_examples=examples())
    assert report.verdict.label.startswith("mmdet (momentum not supported")
    assert all(r.status != "failed" for r in report.counted_rows())


# ---------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_compile_fullgraph_equals_eager(loss, dialect):
    torch._dynamo.reset()
    eager, compiled_mod = CLASSES[loss](momentum=0.75, dialect=dialect), CLASSES[loss](momentum=0.75, dialect=dialect)
    compiled = torch.compile(compiled_mod, fullgraph=True)  # fullgraph: any graph break raises
    for x, t in _batches(3):
        _assert_compiled_call_is_eager(eager, compiled, x, t, (t.sum(1, keepdim=True) > 0).float().expand_as(t))
    torch.testing.assert_close(compiled_mod.ema, eager.ema)


def _assert_compiled_call_is_eager(eager, compiled, x, t, w):
    """One call of each on the same inputs: the same loss and the same gradient."""
    xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    le, lc = eager(xe, t, w), compiled(xc, t, w)
    le.backward()
    lc.backward()
    torch.testing.assert_close(lc, le, **TOLERANCE["compiled_vs_eager"])
    torch.testing.assert_close(xc.grad, xe.grad, **TOLERANCE["compiled_vs_eager"])


def test_compile_dynamic_with_changing_hyper_parameters():
    # dynamic=True turns float arguments into SymFloats: the argument checks must not break the graph
    torch._dynamo.reset()
    fc = torch.compile(ghm_c_loss, fullgraph=True, dynamic=True)
    fr = torch.compile(ghm_r_loss, fullgraph=True, dynamic=True)
    for (x, t), weight, mu in zip(_batches(3), (1.0, 2.0, 3.5), (0.02, 0.1, 0.5)):
        torch.testing.assert_close(
            fc(x, t, loss_weight=weight), ghm_c_loss(x, t, loss_weight=weight), **TOLERANCE["compiled_vs_eager"]
        )
        torch.testing.assert_close(
            fr(x, t, mu=mu, loss_weight=weight),
            ghm_r_loss(x, t, mu=mu, loss_weight=weight),
            **TOLERANCE["compiled_vs_eager"],
        )


@pytest.mark.parametrize("mu", [1e-30, 0.02, 1.0, 1e30])
def test_compiled_asl1_is_the_reference_at_every_scale(mu):
    # Under compile ASL1 uses a scaled root instead of torch.hypot (spec.md 3, impl_torch/ghm_r.py):
    # it must stay finite and float32-accurate from tiny to huge residuals, on both sides of mu.
    from impl_torch.ghm_r import _asl1_terms

    mags = np.array([0.0, 1e-38, 1e-30, 3e-20, 1e-7, 0.01, 0.02, 0.5, 1.0, 82.0, 1e19, 1e30, 3e38], np.float32)
    d = np.concatenate([mags, -mags]).astype(np.float32)
    loss, grad = torch.compile(lambda t: _asl1_terms(t, mu), fullgraph=True)(torch.tensor(d))
    d64 = d.astype(np.float64)
    want_loss, want_grad = equations.asl1(d64, mu), equations.asl1_grad(d64, mu)
    np.testing.assert_allclose(
        grad.numpy(), want_grad, rtol=4e-7, atol=1e-38, err_msg=f"compiled dASL1/dd wrong for mu={mu}"
    )
    np.testing.assert_allclose(
        loss.numpy(), want_loss, rtol=1e-6, atol=1e-38, err_msg=f"compiled ASL1 wrong for mu={mu}"
    )


POISONS = {  # (loss, which input, value): a valid entry that poisons the batch (spec.md 7)
    "c: NaN logit": ("c", "pred", math.nan),
    "c: Inf logit": ("c", "pred", math.inf),
    "c: NaN target": ("c", "target", math.nan),
    "c: target 1.5": ("c", "target", 1.5),
    "c: target -0.25": ("c", "target", -0.25),
    "r: NaN residual": ("r", "pred", math.nan),
    "r: Inf target": ("r", "target", -math.inf),
    "r: overflowing residual": ("r", "pred", 3e38),
}


@pytest.mark.parametrize("case", list(POISONS))
def test_compiled_poisoned_batch_is_nan_and_leaves_the_ema_alone(case):
    # Compiled, the validity check is a per-entry flag counted in the histogram's poison slot
    # instead of eager's min/max pass: it must give the same outcome, and ignore masked junk.
    loss, which, value = POISONS[case]
    rng = np.random.default_rng(3)
    pred = torch.tensor(rng.normal(size=(40, 3)), dtype=torch.float32)
    target = torch.tensor(rng.integers(0, 2, size=(40, 3)), dtype=torch.float32)
    if value == 3e38:
        target[7, 1] = -3e38  # each finite, the difference is not
    lw = torch.ones_like(pred)
    lw[0] = 0
    for tensor in (pred, target):  # junk under weight 0 never counts
        tensor[0] = math.nan
    (pred if which == "pred" else target)[7, 1] = value
    for momentum in (0.0, 0.75):
        eager_mod, compiled_mod = CLASSES[loss](momentum=momentum), CLASSES[loss](momentum=momentum)
        compiled = torch.compile(compiled_mod, fullgraph=True)
        clean_x = pred.clone()
        clean_x[7, 1] = 0.5
        clean_t = target.clone()
        clean_t[7, 1] = 0.0
        compiled(clean_x, clean_t, lw), eager_mod(clean_x, clean_t, lw)  # a clean call first: the EMA has a state
        state = compiled_mod.ema.clone()
        xc, xe = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        lc, le = compiled(xc, target, lw), eager_mod(xe, target, lw)
        lc.backward(), le.backward()
        assert torch.isnan(lc) and torch.isnan(le), f"{case}: compiled {lc}, eager {le}; both must be NaN"
        assert torch.isnan(xc.grad[7, 1]) and torch.equal(xc.grad[0], torch.zeros(3)), (
            f"{case}: the poisoned entry's gradient must be NaN and the masked row's 0, got {xc.grad[[0, 7]]}"
        )
        if momentum:
            assert torch.equal(compiled_mod.ema, state), f"{case}: a poisoned batch changed the EMA state"
            clean = compiled(clean_x, clean_t, lw)
            torch.testing.assert_close(clean, eager_mod(clean_x, clean_t, lw), **TOLERANCE["compiled_vs_eager"])


@pytest.mark.parametrize("loss, dialect", [("c", "paper"), ("r", "mmdet")])
def test_compiled_modules_pass_the_catalogue(loss, dialect):
    # The compiled code differs from eager (fused entropy, scaled root, poison slot, unchecked
    # gather): the conformance catalogue judges it as it would any port. Every case has its own
    # bins and shapes, so the compile caches must hold many graphs.
    from ghm_conformance.protocol import from_torch_module

    def factory(**hyper):
        return torch.compile(CLASSES[loss](dialect=dialect, **hyper), fullgraph=True, dynamic=True)

    with torch._dynamo.config.patch(recompile_limit=100_000, accumulated_recompile_limit=100_000):
        report = run_catalogue(
            from_torch_module(factory),
            loss,
            dialect=dialect,
            max_examples=min(examples(), 5),
            timeout=120,
            first_timeout=300,
        )
    assert_catalogue_passes(report, dialect)


def _layouts(n: int, c: int, seed: int):
    """(pred, target, label_weight) of n anchors x c classes in the layouts detectors produce."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=gen) * 3
    t = (torch.rand(n, c, generator=gen) < 0.3).float()
    w = (torch.rand(n, c, generator=gen) < 0.8).float()
    return x, t, w


SEQUENCES = {  # call after call on one compiled module, as a training loop meets them
    "no weights, then weights at new batch sizes": [("none", 8), ("full", 12), ("full", 16)],
    "per-anchor weights at new batch sizes": [("anchor", 8), ("anchor", 12), ("anchor", 16)],
    "class indices, then per-anchor weights": [("classes", 8), ("classes+anchor", 12), ("classes+anchor", 16)],
    "transposed label weight": [("transposed", 8), ("transposed", 12)],
    "channels_last (B, C, H, W)": [("channels_last", 8), ("channels_last+full", 12)],
}


def _call_args(form: str, n: int, loss: str, seed: int):
    c = 5 if loss == "c" else 4
    x, t, w = _layouts(n, c, seed)
    if loss == "r":
        t = x + torch.randn(n, c, generator=torch.Generator().manual_seed(seed)) * 0.05
    if form == "none":
        return x, t, None
    if form == "full":
        return x, t, w
    if form == "anchor":
        return x, t, w[:, 0]
    if form.startswith("classes"):  # labels (N,) with C = background
        labels = torch.where(t.sum(1) > 0, t.argmax(1), c)
        return x, labels, (w[:, 0] if form.endswith("anchor") else None)
    if form == "transposed":
        return x, t, w.T.contiguous().T
    shape = (2, c, n // 2, 1) if n % 2 == 0 else (1, c, n, 1)  # channels_last: an (B, C, H, W) head output
    as4d = lambda a: a.T.reshape(shape).contiguous(memory_format=torch.channels_last)  # noqa: E731
    return as4d(x), as4d(t), (as4d(w) if form.endswith("full") else None)


@pytest.mark.parametrize(
    "sequence, loss", [(s, k) for s in SEQUENCES for k in ("c", "r") if k == "c" or "class" not in s]
)  # GHM-R has no class indices
def test_compiled_accepts_every_layout_and_call_sequence_that_eager_accepts(sequence, loss):
    # Found by fuzzing torch.compile(fullgraph=True) (issue 19): a transposed label weight or a
    # channels_last batch hit "non-contiguous out= tensor"; weights first given at a new batch
    # size (automatic dynamic shapes) failed inside the shape check while formatting its message.
    torch._dynamo.reset()
    eager, compiled_mod = CLASSES[loss](momentum=0.75), CLASSES[loss](momentum=0.75)
    compiled = torch.compile(compiled_mod, fullgraph=True)
    for seed, (form, n) in enumerate(SEQUENCES[sequence]):
        _assert_compiled_call_is_eager(eager, compiled, *_call_args(form, n, loss, seed))
    torch.testing.assert_close(compiled_mod.ema, eager.ema, **TOLERANCE["compiled_vs_eager"])


def test_compile_fullgraph_reports_argument_errors_with_their_message():
    # Dynamo cannot re-raise a user exception out of a full graph (spec.md 7): it raises Unsupported,
    # whose message must still say what is wrong. Without fullgraph the ValueError itself is raised.
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"target must have the shape of pred"):
        torch.compile(ghm_c_loss, fullgraph=True)(torch.zeros(3), torch.zeros(4))
    torch._dynamo.reset()
    with pytest.raises(ValueError, match=r"target must have the shape of pred"):
        torch.compile(ghm_c_loss)(torch.zeros(3), torch.zeros(4))


# ---------------------------------------------------------------- module state


def test_state_dict_round_trip_and_buffers_are_not_parameters():
    crit = GHMCLoss(momentum=0.75)
    (x1, t1), (x2, t2) = _batches(2)
    crit(x1, t1)
    sd = crit.state_dict()
    assert set(sd) == {"ema", "ema_initialized"} and list(crit.parameters()) == []
    fresh = GHMCLoss(momentum=0.75)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh(x2, t2), crit(x2, t2))
    assert torch.equal(fresh.ema, crit.ema)


def test_eval_mode_computes_but_does_not_update_the_ema():
    (x1, t1), (x2, t2) = _batches(2)
    train = GHMCLoss(momentum=0.75)
    train(x1, t1)
    ev = GHMCLoss(momentum=0.75)
    ev.load_state_dict(train.state_dict())
    ev.eval()
    before = ev.ema.clone()
    assert torch.equal(ev(x2, t2), train(x2, t2))  # same value as a training call would give
    assert torch.equal(ev.ema, before) and not torch.equal(train.ema, before)


CASTS = {
    "half": lambda m: m.half(),
    "bfloat16": lambda m: m.bfloat16(),
    "double": lambda m: m.double(),
    "to(float16)": lambda m: m.to(torch.float16),
    "to(cpu, float64)": lambda m: m.to("cpu", torch.float64),
}


@pytest.mark.parametrize("cast", list(CASTS))
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_module_casts_keep_the_ema_float32(cast, dialect):
    # A detector calls model.half() with the loss inside: in float16 a region count above 65504 is
    # inf, and every later loss and gradient would be exactly 0 (no NaN, no error).
    model = torch.nn.Module()
    model.crit = GHMCLoss(momentum=0.75, dialect=dialect)
    CASTS[cast](model)
    assert model.crit.ema.dtype == torch.float32
    n = 70000
    x = torch.zeros(n, 1)  # g = 1/2 exactly: every entry in region 15
    t = torch.zeros(n, 1)
    state = None
    for _ in range(2):
        xg = x.clone().requires_grad_(True)
        out = model.crit(xg, t)
        out.backward()
        ref = reference.ghm_c(x.numpy(), t.numpy(), momentum=0.75, state=state, dialect=dialect)
        state = ref.state
        assert out.item() == pytest.approx(ref.loss, rel=TOLERANCE["float32"]["rtol"]) and out.item() > 0
        assert xg.grad.abs().sum() > 0


# ---------------------------------------------------------------- the CPU histogram


@pytest.mark.parametrize("slots", [2, 11, 31, 33, 65, 129, 257, 301])
@pytest.mark.parametrize("n", [(1 << 16) - 1, (1 << 16) + 7, (1 << 20) + 13])
@pytest.mark.parametrize("spread", ["one region", "uniform", "two regions alternating"])
def test_region_counts_are_exact_on_every_cpu_path(slots, n, spread):
    # region_counts switches on size (threads past 2^20, interleaved sub-histograms past 2^16),
    # on slots (8, 4, 2 or 1 sub-histograms of uint8 indices; no uint8 past 256) and on a tail
    # of n mod 8 entries: each path must give torch.bincount's exact counts.
    from impl_torch._harmonize import region_counts

    rng = np.random.default_rng(n + slots)
    ind = {
        "one region": np.full(n, slots - 1),
        "uniform": rng.integers(0, slots, n),
        "two regions alternating": np.arange(n) % 2 * (slots - 1),
    }[spread]
    ind = torch.tensor(ind, dtype=torch.int32)
    want = torch.bincount(ind.long(), minlength=slots)
    got = region_counts(ind, slots - 1)
    assert got.dtype == torch.int64
    assert torch.equal(got, want), f"counts differ for slots={slots}, n={n}, {spread}: {got} vs {want}"
    if slots <= 256:  # uint8 indices at an odd storage offset, as a caller's slice would give
        shifted = torch.cat([torch.zeros(1, dtype=torch.uint8), ind.to(torch.uint8)])[1:]
        assert torch.equal(region_counts(shifted, slots - 1), want)


# ---------------------------------------------------------------- memory layouts

LAYOUTS = {
    "transposed": lambda a: torch.tensor(np.ascontiguousarray(a.T)).T,
    "every other column": lambda a: torch.tensor(np.repeat(a, 2, axis=1))[:, ::2],
    # a (1, 1, H, W) slice of a channels_last tensor with 2 channels: strides (., ., 2W, 2)
    "channels_last slice": lambda a: torch.tensor(np.stack([a, a])[None]).contiguous(memory_format=torch.channels_last)[
        0, 0
    ],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bool])
def test_non_contiguous_inputs_give_the_reference(layout, loss, weight_dtype):
    # Regression: a transposed target made the gather's scratch buffer non-contiguous, and
    # the call raised "view size is not compatible" whenever label weights were given.
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(13, 5)) * (3 if loss == "c" else 0.05)).astype(np.float32)
    t = (rng.random((13, 5)) < 0.3).astype(np.float32) if loss == "c" else np.zeros((13, 5), np.float32)
    w = (rng.random((13, 5)) < 0.8).astype(np.float32)
    want = REF[loss](x, t, w, dialect="mmdet")
    lay = LAYOUTS[layout]
    pred = lay(x).requires_grad_(True)
    assert not pred.is_contiguous()
    out = FUNCTIONS[loss](pred, lay(t), lay(w).to(weight_dtype), dialect="mmdet")
    out.backward()
    np.testing.assert_allclose(out.item(), want.loss, **TOLERANCE["float32"])
    np.testing.assert_allclose(pred.grad.numpy(), want.grad, **TOLERANCE["float32"])


@pytest.mark.parametrize("kind", ["c", "r"])
@pytest.mark.parametrize("dtype, tiny", [(np.float32, 1e-40), (np.float16, 1e-6), (np.float64, 1e-310)])
def test_a_subnormal_weight_is_valid_under_flush_to_zero(kind, dtype, tiny):
    # spec.md 1 (issue 28): w > 0 for the number as stored, so torch.set_flush_denormal(True) (which
    # makes 1e-40 > 0 False) must not mask it: the weight is compared by its bits
    x, t = _batches(1, seed=7)[0]
    mask = np.ones((16, 3))
    mask[::4] = 0.0
    w = mask.astype(dtype)
    w[1] = tiny
    ref = REF[kind](x.numpy(), t.numpy(), mask, bins=5)
    assert not np.isclose(ref.loss, REF[kind](x.numpy(), t.numpy(), np.where(w >= 1, 1.0, 0.0), bins=5).loss)
    torch.set_flush_denormal(True)
    try:
        got = FUNCTIONS[kind](x, t, torch.from_numpy(w), bins=5)
    finally:
        torch.set_flush_denormal(False)
    np.testing.assert_allclose(float(got), ref.loss, **TOLERANCE["float32"])
