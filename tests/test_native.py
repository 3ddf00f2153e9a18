"""The fused CPU kernels of impl_torch (``_native.c``, used for float32 CPU inputs) against the
pure-torch path they replace (the fallback everywhere else): the same losses, gradients, target
gradients and EMA states for every target kind, label weight kind, reduction and dialect, the
same outcome for poisoned batches, under torch.compile too, and split over threads at any
boundary. Inputs keep g away from region edges (the two paths' float32 sigmoids may differ by an
ulp) or put it exactly on one (pred = 0)."""

import os
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from impl_torch import (  # noqa: E402
    GHMCLoss,
    GHMRLoss,
    _native,
    ghm_c_loss,
    ghm_r_loss,
)
from impl_torch._native import use_native  # noqa: E402
from tolerances import TOLERANCE  # noqa: E402

# the same float32 computation with other transcendental implementations and a float64 sum
CLOSE = dict(**TOLERANCE["compiled_vs_eager"], equal_nan=True)


def _assert_same(got, want, msg):
    """(loss, pred gradient, target gradient, ema) of the two paths. A gradient beta_i (p_i - t_i)
    also carries the paths' sigmoids' difference (an ulp or two of p <= 1) unscaled by p - t, which
    a soft target near p does not shrink: so atol 1e-6 of the largest gradient."""
    for a, b, what in zip(got, want, ("loss", "pred gradient", "target gradient", "ema")):
        if b is None:
            continue
        tolerance = dict(CLOSE)
        if what.endswith("gradient") and b.numel():
            tolerance["atol"] = max(CLOSE["atol"], 1e-6 * float(b.nan_to_num().abs().max()))
        torch.testing.assert_close(a, b, **tolerance, msg=f"{what}, {msg}")


pytestmark = pytest.mark.skipif(_native._compiler() is None, reason="no C compiler: the kernels cannot be built")


def test_kernels_are_built_where_a_c_compiler_exists():
    assert _native.library() is not None, "a C compiler exists, so the fused kernels must build and load"
    assert _native.serves(torch.zeros(3, 2), 30)
    assert not _native.serves(torch.zeros(3, 2, dtype=torch.float64), 30), "float64 takes the pure path"
    assert not _native.serves(torch.zeros(3, 2).t(), 30), "a non-contiguous pred takes the pure path"
    assert not _native.serves(torch.zeros(3, 2), 255), "255 regions and two spare slots do not fit a byte"
    assert not _native.serves(torch.zeros(3, 2), 30, diagnostics=True), "the diagnostics hook lives in the pure path"


def _away_from_edges_c(x, t, bins):
    """x = 0 (g = |1/2 - t|, exact for dyadic t) where g is within 1e-3 of a region's width of an edge."""
    g = np.abs(1 / (1 + np.exp(-x.astype(np.float64))) - t) * bins
    return np.where(np.abs(g - np.round(g)) < 1e-3, 0.0, x).astype(np.float32)


def _c_inputs(rng, shape, bins, target_kind):
    x = (rng.normal(size=shape) * 3 - 1).astype(np.float32)
    x.reshape(-1)[:7] = [0.0, 40.0, -40.0, 17.0, -17.0, 7.0, -1e-30][: x.size]  # saturated and exact entries
    if target_kind == "class indices":
        labels = rng.integers(0, shape[-1] + 1, size=shape[:-1])
        onehot = (labels[..., None] == np.arange(shape[-1])).astype(np.float64)
        return torch.tensor(_away_from_edges_c(x, onehot, bins)), torch.tensor(labels)
    if target_kind == "soft":
        t = rng.integers(0, 65, size=shape) / 64  # dyadic: exact in float32, so is g at pred = 0
    else:
        t = (rng.random(shape) < 0.1).astype(np.float64)
    x = torch.tensor(_away_from_edges_c(x, t, bins))
    as_dtype = {"soft": torch.float32, "float64": torch.float64, "bool": torch.bool, "int labels": torch.int64}
    return x, torch.tensor(t).to(as_dtype.get(target_kind, torch.float32))


def _r_inputs(rng, shape, bins, mu):
    t = (rng.normal(size=shape) * 0.1).astype(np.float32)
    x = (t + rng.normal(size=shape) * 0.05).astype(np.float32)
    d = x.astype(np.float64) - t.astype(np.float64)
    g = np.abs(d / np.hypot(d, mu)) * bins
    x = np.where(np.abs(g - np.round(g)) < 1e-3, t, x)  # d = 0 exactly: region 0
    return torch.tensor(x), torch.tensor(t)


def _weights(rng, shape, kind):
    if kind is None:
        return None
    per_anchor = kind.startswith("per-anchor")
    # the kernels test w > 0 on the bits: -0.0 is masked, +inf and a float32 subnormal are valid
    values, p = [1.0, 0.5, 0.0, -1.0, np.nan, np.inf, -0.0, 1e-40], [0.5, 0.1, 0.1, 0.1, 0.1, 0.04, 0.03, 0.03]
    w = rng.choice(values, size=shape[:-1] if per_anchor else shape, p=p)
    if kind.endswith("bool"):
        return torch.tensor(w > 0)
    if kind.endswith("int"):
        return torch.tensor(np.nan_to_num(w * 2, posinf=3.0)).to(torch.int64)
    return torch.tensor(w).to(torch.float64 if kind.endswith("float64") else torch.float32)


def _both(make_loss, x, t, w, reduction, calls=2):
    """(loss, pred grad, target grad, ema) of the kernels and of the pure path, ``calls`` calls each."""
    out = []
    for native in (True, False):
        loss_fn = make_loss()
        with use_native(native):
            for _ in range(calls):
                xs = x.clone().requires_grad_(True)
                ts = t.clone().requires_grad_(True) if t.is_floating_point() else t
                loss = loss_fn(xs, ts, w)
                upstream = torch.linspace(0.5, 2.0, loss.numel()).reshape(loss.shape)  # "none": one per entry
                (loss * upstream).sum().backward() if reduction == "none" else (loss * 3.0).backward()
        out.append((loss.detach(), xs.grad, ts.grad if t.is_floating_point() else None, getattr(loss_fn, "ema", None)))
    return out


@pytest.mark.parametrize("target_kind", ["soft", "binary", "bool", "int labels", "class indices", "float64"])
@pytest.mark.parametrize("weight_kind", [None, "float32", "per-anchor float32", "bool", "per-anchor int", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ghm_c_kernels_equal_the_pure_path(target_kind, weight_kind, reduction):
    rng = np.random.default_rng(zlib.crc32(repr((target_kind, weight_kind, reduction)).encode()))
    bins = int(rng.choice([1, 7, 30, 254]))
    x, t = _c_inputs(rng, (300, 6), bins, target_kind)
    w = _weights(rng, (300, 6), weight_kind)
    for dialect, momentum in (("paper", 0.75), ("mmdet", 0.0), ("mmdet", 0.9)):
        got, want = _both(
            lambda momentum=momentum, dialect=dialect: GHMCLoss(
                bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=2.0
            ),
            x,
            t,
            w,
            reduction,
        )
        _assert_same(got, want, f"{dialect}, momentum {momentum}")
        assert got[1].dtype == x.dtype and (got[2] is None or got[2].dtype == t.dtype)


@pytest.mark.parametrize("weight_kind", [None, "float32", "per-anchor bool"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mu", [1e-3, 0.02, 10.0])
def test_ghm_r_kernels_equal_the_pure_path(weight_kind, reduction, mu):
    rng = np.random.default_rng(zlib.crc32(repr((weight_kind, reduction, mu)).encode()))
    x, t = _r_inputs(rng, (500, 4), 10, mu)
    w = _weights(rng, (500, 4), weight_kind)
    for dialect, momentum in (("paper", 0.75), ("mmdet", 0.0)):
        got, want = _both(
            lambda momentum=momentum, dialect=dialect: GHMRLoss(
                mu=mu, bins=10, momentum=momentum, dialect=dialect, reduction=reduction
            ),
            x,
            t,
            w,
            reduction,
        )
        _assert_same(got, want, f"{dialect}, momentum {momentum}")


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("poison", ["nan pred", "inf pred", "target out of range", "nan target", "masked nan"])
def test_a_poisoned_batch_is_nan_on_both_paths_and_the_ema_is_untouched(loss, poison):
    rng = np.random.default_rng(3)
    x, t = _c_inputs(rng, (64, 5), 30, "soft") if loss == "c" else _r_inputs(rng, (64, 5), 10, 0.02)
    w = torch.ones(64, 5)
    w[1, :] = 0
    at = (1, 2) if poison == "masked nan" else (5, 3)
    if "pred" in poison or poison == "masked nan":
        x[at] = float("inf") if poison == "inf pred" else float("nan")
    else:
        if loss == "r" and poison == "target out of range":
            pytest.skip("GHM-R has no target range")
        t[at] = 1.5 if poison == "target out of range" else float("nan")
    make = (lambda: GHMCLoss(momentum=0.75)) if loss == "c" else (lambda: GHMRLoss(momentum=0.75))
    got, want = _both(make, x, t, w, "mean", calls=1)
    _assert_same(got, want, poison)
    loss_value, grad, _, ema = got
    if poison == "masked nan":
        assert torch.isfinite(loss_value) and ema.abs().sum() > 0, "a masked NaN is ignored"
    else:
        assert torch.isnan(loss_value), "a poisoned batch gives a NaN loss"
        assert torch.isnan(grad[w > 0]).all() and (grad[w == 0] == 0).all(), "valid gradients NaN, masked 0"
        assert (ema == 0).all(), "the EMA state is left as it was"


@pytest.mark.parametrize("cols", [1, 7, 80])
def test_threads_split_the_entries_anywhere_in_a_row(cols):
    """Above 2^18 entries the kernels run in chunks on several threads, and a chunk may start
    mid-row: the per-anchor weights and the counts must not notice."""
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        rng = np.random.default_rng(cols)
        rows = 2 * _native.CHUNK // cols + 3
        x, t = _c_inputs(rng, (rows, cols), 30, "binary")
        w = _weights(rng, (rows, cols), "per-anchor float32")
        assert _native.chunks(x.numel()) == 3
        got, want = _both(lambda: GHMCLoss(bins=30, momentum=0.75), x, t, w, "mean", calls=1)
        _assert_same(got, want, f"{cols} columns")
    finally:
        torch.set_num_threads(threads)


def test_no_valid_entry_gives_zero_and_an_empty_input_takes_the_pure_path():
    x = torch.randn(10, 3, requires_grad=True)
    loss = ghm_c_loss(x, torch.zeros(10, 3), torch.zeros(10))
    loss.backward()
    assert loss.item() == 0.0 and (x.grad == 0).all()
    assert ghm_r_loss(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0


def test_differentiable_once_and_backward_twice_with_retain_graph():
    x = torch.randn(50, 4, requires_grad=True)
    t = (torch.rand(50, 4) < 0.2).float()
    loss = GHMCLoss()(x, t)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (again,) = torch.autograd.grad(loss, x, retain_graph=True)
    assert torch.equal(first, again), "the saved inputs of the backward pass are not consumed"
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(loss, x, create_graph=True)


@pytest.mark.parametrize("loss", ["c", "r"])
def test_compiled_graph_calls_the_kernels_and_equals_eager(loss):
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm

    torch._dynamo.reset()
    rng = np.random.default_rng(7)
    x, t = _c_inputs(rng, (200, 5), 30, "soft") if loss == "c" else _r_inputs(rng, (200, 5), 10, 0.02)
    make = GHMCLoss if loss == "c" else GHMRLoss
    eager, compiled_module = make(momentum=0.75), make(momentum=0.75)
    compiled = torch.compile(compiled_module, fullgraph=True, backend=capture)
    for _ in range(2):
        xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        le, lc = eager(xe, t), compiled(xc, t)
        le.backward()
        lc.backward()
        torch.testing.assert_close(lc, le, **CLOSE)
        torch.testing.assert_close(xc.grad, xe.grad, **CLOSE)
    torch.testing.assert_close(compiled_module.ema, eager.ema, **CLOSE)
    assert any("ghm_loss.native_forward" in g for g in graphs), "the compiled graph calls the fused kernel"
    torch._dynamo.reset()


def test_environment_switch_and_a_failed_build_fall_back_to_the_pure_path(tmp_path):
    code = (
        "import warnings, torch; warnings.simplefilter('always')\n"
        "from impl_torch import _native, ghm_c_loss\n"
        "x = torch.randn(20, 3, requires_grad=True)\n"
        "ghm_c_loss(x, (x > 0).float()).backward()\n"
        "print(_native.available(), bool(torch.isfinite(x.grad).all()))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = dict(os.environ, PYTHONPATH=root, GHM_LOSS_CACHE=str(tmp_path))
    off = subprocess.run(
        [sys.executable, "-c", code], env=dict(base, GHM_LOSS_NATIVE="0"), capture_output=True, text=True, timeout=300
    )
    assert off.stdout.split() == ["False", "True"], off.stderr
    broken = subprocess.run(
        [sys.executable, "-c", code], env=dict(base, CC="false"), capture_output=True, text=True, timeout=300
    )
    assert broken.stdout.split() == ["False", "True"], broken.stderr
    assert "could not be built" in broken.stderr, "a failed build says so (a RuntimeWarning), once"


@pytest.mark.parametrize("flavour", range(len(_native._FLAVOURS)))
def test_every_build_flavour_builds_and_computes_the_same_losses(flavour, tmp_path, monkeypatch):
    """The fallback builds (no libmvec, no OpenMP, no -march=native) are what a machine without
    them gets: each must compile this source and give the pure path's numbers too."""
    flags = _native._FLAVOURS[flavour]
    monkeypatch.setenv("GHM_LOSS_CACHE", str(tmp_path))
    monkeypatch.setattr(_native, "_FLAVOURS", (flags,))
    with warnings.catch_warnings(record=True):  # a flavour that does not build says so; checked below
        lib = _native._build()
    if lib is None and "-DGHM_MVEC" in flags:
        pytest.skip(f"{flags}: no libmvec here")
    assert lib is not None, f"{flags}: the kernels did not build"
    monkeypatch.setattr(_native, "_lib", lib)
    monkeypatch.setattr(_native, "_tried", True)
    assert _native.library() is lib and _native.serves(torch.zeros(3, 2), 30)
    rng = np.random.default_rng(flavour)
    x, t = _c_inputs(rng, (300, 7), 30, "soft")
    w = _weights(rng, (300, 7), "float32")
    _assert_same(*_both(lambda: GHMCLoss(bins=30, momentum=0.75), x, t, w, "mean"), f"GHM-C, {flags}")
    x, t = _r_inputs(rng, (300, 4), 10, 0.02)
    w = _weights(rng, (300, 4), "per-anchor bool")
    _assert_same(*_both(lambda: GHMRLoss(mu=0.02, bins=10), x, t, w, "sum"), f"GHM-R, {flags}")
