"""impl_torch against the reference: the catalogue, gradcheck, compile, state, dtypes, bad input."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import reference  # noqa: E402
from ghm_conformance import from_numpy_function, from_torch_module, run_catalogue  # noqa: E402
from ghm_conformance import cases as cs  # noqa: E402
from impl_torch import GHMCLoss, GHMRLoss, ghm_c_loss, ghm_r_loss  # noqa: E402
from impl_torch._harmonize import region_counts, region_index  # noqa: E402

from conftest import assert_catalogue_passes, examples  # noqa: E402

CLASSES = {"c": GHMCLoss, "r": GHMRLoss}
FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
REF = {"c": reference.ghm_c, "r": reference.ghm_r}


# ---------------------------------------------------------------- the catalogue

@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_module_passes_catalogue(loss, dialect):
    port = from_torch_module(lambda **kw: CLASSES[loss](dialect=dialect, **kw))
    assert_catalogue_passes(run_catalogue(port, loss, dialect=dialect, max_examples=examples()), dialect)


@pytest.mark.parametrize("loss", ["c", "r"])
def test_functional_form_passes_catalogue_without_momentum(loss):
    def fn(pred, target, lw, **kw):
        x = torch.tensor(pred, requires_grad=True)
        out = FUNCTIONS[loss](x, torch.tensor(target), torch.tensor(lw), dialect="mmdet", **kw)
        (g,) = torch.autograd.grad(out, x)
        return out.item(), g.numpy()

    report = run_catalogue(from_numpy_function(fn), loss, dialect="mmdet", max_examples=examples())
    assert report.verdict.startswith("mmdet (momentum not supported")
    assert all(r.status != "failed" for r in report.deciding())


# ---------------------------------------------------------------- every argument, table-driven

SETTINGS = [
    dict(reduction="mean"), dict(reduction="sum"), dict(reduction="none"),
    dict(reduction="mean", loss_weight=2.5), dict(reduction="none", loss_weight=-0.5),
]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
@pytest.mark.parametrize("loss", ["c", "r"])
@given(data=st.data())
def test_reductions_and_weights_match_reference(loss, dialect, kwargs, data):
    case = data.draw(cs.clear_case(loss))
    c = case.calls[0]
    x = torch.tensor(c.pred, requires_grad=True)
    out = FUNCTIONS[loss](x, torch.tensor(c.target), torch.tensor(c.label_weight), bins=case.bins, dialect=dialect,
                          **case.hyper, **kwargs)
    out.sum().backward()
    ref = REF[loss](c.pred, c.target, c.label_weight, bins=case.bins, dialect=dialect, **case.hyper, **kwargs)
    np.testing.assert_allclose(out.detach().numpy(), ref.loss, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(x.grad.numpy(), ref.grad, rtol=2e-5, atol=1e-7)


@st.composite
def _soft_entry(draw, bins):
    """(logit, soft target) whose g = |p - t| lies mid-region: p = t + g or t - g."""
    t = draw(st.integers(0, 20)) / 20
    g = (draw(st.integers(0, bins - 1)) + draw(st.integers(20, 80)) / 100) / bins
    p = t + g if t + g < 0.999 else t - g
    assume(0.001 < p < 0.999)
    return np.float32(np.log(p / (1 - p))), np.float32(t)


@given(st.sampled_from([2, 3, 5, 10]).flatmap(lambda m: st.tuples(st.just(m), st.lists(_soft_entry(m), min_size=1,
                                                                                          max_size=12))))
def test_soft_targets_match_reference(bins_entries):
    bins, entries = bins_entries
    x = np.array([e[0] for e in entries])
    t = np.array([e[1] for e in entries])
    assume(not cs.near_edge(cs.gradient_norm("c", x, t, None), bins).any())
    out = ghm_c_loss(torch.tensor(x), torch.tensor(t), bins=bins)
    assert out.item() == pytest.approx(reference.ghm_c(x, t, bins=bins).loss, rel=2e-5)


def test_integer_class_targets_match_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    labels = np.array([0, 3, 2, 1, 3, 0])
    lw = np.array([1, 1, 0, 1, 1, 1], np.float32)
    for dialect in ("paper", "mmdet"):
        out = ghm_c_loss(torch.tensor(x), torch.tensor(labels), torch.tensor(lw), bins=4, dialect=dialect)
        assert out.item() == pytest.approx(reference.ghm_c(x, labels, lw, bins=4, dialect=dialect).loss, rel=2e-5)
    # a masked anchor may carry an out-of-range label (e.g. -1 for "ignore")
    odd = labels.copy()
    odd[2] = -1
    assert ghm_c_loss(torch.tensor(x), torch.tensor(odd), torch.tensor(lw), bins=4).item() == pytest.approx(
        reference.ghm_c(x, labels, lw, bins=4).loss, rel=2e-5)


def test_worked_examples():
    z = torch.zeros(2, 3)
    assert ghm_c_loss(z, z).item() == pytest.approx(math.log(2) / 30, rel=1e-6)
    assert ghm_c_loss(z, z, dialect="mmdet").item() == pytest.approx(math.log(2), rel=1e-6)
    p, t = torch.tensor([5.0, -5.0]), torch.tensor([1.0, 0.0])
    assert ghm_c_loss(p, t, bins=2).item() == pytest.approx(0.0033577, abs=1e-7)
    assert ghm_c_loss(p, t, bins=2, dialect="mmdet").item() == pytest.approx(0.0067153, abs=1e-7)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_gradcheck_float64_away_from_edges(loss, dialect):
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
    x = torch.tensor(x.reshape(4, 3), dtype=torch.float64, requires_grad=True)
    t = torch.tensor(t.reshape(4, 3), dtype=torch.float64)
    lw = torch.tensor(rng.integers(0, 4, size=(4, 3)) > 0, dtype=torch.float64)
    hyper = {"mu": mu} if loss == "r" else {}
    fn = lambda x: FUNCTIONS[loss](x, t, lw, bins=bins, dialect=dialect, **hyper)  # noqa: E731
    # eps * max|dg/dx| (1/4 for g, 1/mu for gr) stays far below the 0.3/bins margin to an edge
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


# ---------------------------------------------------------------- state

def _batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32),
             torch.tensor(rng.integers(0, 2, size=(16, 3)), dtype=torch.float32)) for _ in range(n)]


@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_ema_buffer_matches_reference_state(dialect):
    crit, state = GHMCLoss(bins=10, momentum=0.75, dialect=dialect), None
    for x, t in _batches():
        out = crit(x, t)
        ref = reference.ghm_c(x.numpy(), t.numpy(), bins=10, momentum=0.75, state=state, dialect=dialect)
        state = ref.state
        assert out.item() == pytest.approx(ref.loss, rel=2e-5)
        np.testing.assert_allclose(crit.ema.numpy(), ref.state, rtol=1e-6)


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
    moved = GHMCLoss(momentum=0.75).to(torch.device("cpu"), torch.float64)
    assert moved.ema.dtype == torch.float32  # the state stays float32 (spec.md 8); the loss still works
    moved(x1, t1)


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


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pred_gives_nan_and_keeps_the_buffer(loss, bad):
    crit = CLASSES[loss](momentum=0.75)
    (x1, t1), (x2, t2) = _batches(2)
    crit(x1, t1)
    before = (crit.ema.clone(), crit.ema_initialized.clone())
    x2 = x2.clone().requires_grad_(True)
    with torch.no_grad():
        x2[3, 1] = bad
    out = crit(x2, t2)
    out.backward()
    assert torch.isnan(out) and torch.equal(crit.ema, before[0]) and torch.equal(crit.ema_initialized, before[1])
    assert torch.isnan(x2.grad).all()


def test_out_of_range_values_poison_the_loss_without_a_sync():
    x = torch.zeros(3, 2)
    assert torch.isnan(ghm_c_loss(x, torch.tensor([[0.0, 1.0], [1.5, 0.0], [0.0, 0.0]])))
    assert torch.isnan(ghm_c_loss(x, torch.tensor([0, 3, 1])))  # label 3 > C = 2
    assert torch.isnan(ghm_c_loss(x, torch.tensor([0, -1, 1])))
    assert not torch.isnan(ghm_c_loss(x, torch.tensor([0, 2, 1])))  # 2 = C = background
    crit = GHMCLoss(momentum=0.5)
    crit(x, torch.tensor([0, 9, 1]))
    assert not crit.ema_initialized and not crit.ema.any()


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_empty_and_fully_masked_give_zero_with_zero_gradient(loss, dialect):
    crit = CLASSES[loss](momentum=0.75, dialect=dialect)
    for shape in [(0, 4), (5, 4)]:
        x = torch.randn(shape, requires_grad=True)
        out = crit(x, torch.zeros(shape), torch.zeros(shape))
        out.backward()
        assert out.item() == 0.0 and not x.grad.any()
    assert not crit.ema.any() and not crit.ema_initialized


@pytest.mark.parametrize("make, match, exc", [
    (lambda: GHMCLoss(bins=0), "bins", ValueError), (lambda: GHMCLoss(momentum=1.0), "momentum", ValueError),
    (lambda: GHMCLoss(dialect="official"), "dialect", ValueError), (lambda: GHMCLoss(reduction="avg"), "reduction", ValueError),
    (lambda: GHMRLoss(mu=0.0), "mu", ValueError), (lambda: GHMCLoss(loss_weight=float("inf")), "loss_weight", ValueError),
    (lambda: ghm_c_loss(torch.zeros(3), torch.zeros(4)), "target", ValueError),
    (lambda: ghm_c_loss(torch.zeros(3), torch.zeros(3), torch.ones(2)), "label_weight", ValueError),
    (lambda: ghm_c_loss(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)), "class indices", ValueError),
    (lambda: ghm_c_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3)), "pred", TypeError),
    (lambda: ghm_c_loss(np.zeros(3), torch.zeros(3)), "pred", TypeError),
    (lambda: ghm_r_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long)), "target", TypeError),
])
def test_bad_input_raises_naming_the_argument(make, match, exc):
    with pytest.raises(exc, match=match):
        make()


# ---------------------------------------------------------------- compile, dtypes, determinism, scale

@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_compile_fullgraph_equals_eager(loss, dialect):
    torch._dynamo.reset()
    eager, compiled_mod = CLASSES[loss](momentum=0.75, dialect=dialect), CLASSES[loss](momentum=0.75, dialect=dialect)
    compiled = torch.compile(compiled_mod, fullgraph=True)  # fullgraph: any graph break raises
    for x, t in _batches(3):
        lw = (t.sum(1, keepdim=True) > 0).float().expand_as(t)
        xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        le, lc = eager(xe, t, lw), compiled(xc, t, lw)
        le.backward()
        lc.backward()
        torch.testing.assert_close(lc, le, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(compiled_mod.ema, eager.ema)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss", ["c", "r"])
def test_half_inputs_use_float32_statistics(dtype, loss):
    case_x, case_t = _batches(1, seed=3)[0]
    x = case_x.to(dtype)
    t = case_t if loss == "c" else case_t.to(dtype)
    xq, tq = x.float().numpy(), t.float().numpy()  # the dequantised inputs
    g = cs.gradient_norm(loss, xq, tq, 0.02)
    assert not cs.near_edge(g, 10).any()
    out = CLASSES[loss](bins=10)(x, t)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(REF[loss](xq, tq, bins=10).loss, rel=2e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = CLASSES[loss](bins=10)(x, t)
    assert auto.dtype == torch.float32 and auto.item() == pytest.approx(out.item(), rel=1e-6)


def test_determinism_bit_identical():
    results = []
    for _ in range(2):
        crit = GHMCLoss(momentum=0.75)
        for x, t in _batches(3, seed=5):
            x = x.clone().requires_grad_(True)
            out = crit(x, t)
            out.backward()
        results.append((out.detach(), x.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.slow
def test_counts_exact_past_two_to_the_24():
    n = (1 << 24) + 3  # a float32 count stalls at 2**24
    x = torch.zeros(n)  # g = 0.5 exactly: region 15 of 30
    t = torch.zeros(n)
    x[:5] = 4.0  # g = sigmoid(4) = 0.982: region 29
    counts = region_counts(region_index((torch.sigmoid(x) - t).abs(), 30), 30)
    assert counts[15].item() == n - 5 and counts[29].item() == 5 and counts.dtype == torch.int64
    # paper: loss = sum over the two regions of their mean CE, over M
    expected = (math.log(2) + math.log1p(math.exp(4.0))) / 30
    assert ghm_c_loss(x, t).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", ["c", "r"])
def test_per_anchor_label_weight_matches_reference(loss):
    x, t = _batches(1, seed=7)[0]
    lw = torch.tensor([1.0, 0.0, 2.0, 1.0] * 4)
    out = FUNCTIONS[loss](x, t, lw, bins=10)
    ref = REF[loss](x.numpy(), t.numpy(), lw.numpy(), bins=10)
    assert out.item() == pytest.approx(ref.loss, rel=2e-5)
