"""Proving the conformance kit: it fails every faulty port of the zoo on the right property
with a small counterexample, passes correct ports of both dialects with the right verdict,
separates edge-only disagreements, and its CLI reports, exits and reproduces as documented."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ghm_conformance import FAILED, PASSED, run_catalogue
from ghm_conformance.cases import Call, Case
from ghm_conformance.cli import main
from ghm_conformance.properties import check_reference_value
from reference import equations as eq

from conftest import examples
from zoo import FAULTY, make_zoo_port

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _entries(result):
    return sum(c.pred.size for c in result.counterexample.case.calls)


@pytest.mark.parametrize("name", list(FAULTY))
def test_zoo_port_gets_the_right_verdict_and_failure(name):
    make_port, prop, verdict = FAULTY[name]
    loss = "r" if name.startswith("GHM-R") else "c"
    report = run_catalogue(make_port, loss, max_examples=examples())
    failed = {r.property.id: r for r in report.deciding() if r.status == FAILED}
    if verdict is not None:
        assert report.verdict == verdict, f"{name}: verdict {report.verdict!r} ({report.verdict_reason})"
    if prop is None:
        assert report.passed and not failed, f"{name} should pass, failed: {sorted(failed)}"
        return
    assert not report.passed
    assert prop in failed, f"{name} should fail {prop!r}; failed: {sorted(failed)}"
    assert _entries(failed[prop]) <= 12, "the counterexample should be shrunk small"
    assert failed[prop].counterexample.outcome.message


def test_dividing_by_nonempty_regions_is_mmdet_not_paper():
    report = run_catalogue(make_zoo_port("c", "mmdet"), "c", max_examples=examples())
    assert report.verdict == "mmdet" and report.passed
    by = {r.name: r.status for r in report.results}
    assert by["value[paper]"] == FAILED and by["value[mmdet]"] == PASSED


def test_dropping_saturated_entries_fails_with_a_few_entries():
    report = run_catalogue(make_zoo_port("c", "mmdet", "drops_saturated"), "c", dialect="mmdet",
                           max_examples=examples(), only=("saturated",))
    (r,) = report.results
    assert r.status == FAILED and _entries(r) <= 3
    c = r.counterexample.case.calls[0]
    assert np.any(np.abs(c.pred) >= 60), "the counterexample must hold a saturated entry"


# ---------------------------------------------------------------- edges

def _float32_floor_port(**_):
    """A correct port computing g and floor(g * M) in float32 (no EMA)."""
    def step(pred, target, label_weight):
        x = pred.astype(np.float32)
        p = np.float32(1) / (np.float32(1) + np.exp(-x))
        g = np.abs(p - target)
        valid = label_weight > 0
        ind = np.minimum(np.floor(g * np.float32(10)).astype(int), 9)
        counts = np.bincount(ind[valid], minlength=10)
        per = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
        beta = np.where(valid, valid.sum() / (counts[ind] * 10.0), 0.0)
        return float(np.sum(beta * per) / valid.sum()), beta * (p - target) / valid.sum()
    return step


def _edge_pred():
    """A float32 logit whose float64 g is just below 3/10 but whose float32 g * 10 is 3."""
    for x in np.arange(-0.8473, -0.8472, 1e-7, dtype=np.float64).astype(np.float32):
        g64 = float(eq.gradient_norm(np.float64(x), 0.0))
        p32 = np.float32(1) / (np.float32(1) + np.exp(-x))
        if eq.region_index(np.array([g64]), 10)[0] == 2 and np.floor(p32 * np.float32(10)) == 3:
            return x
    pytest.skip("no float32 logit straddles the edge on this platform")


def test_disagreement_at_a_region_edge_is_its_own_category():
    x = _edge_pred()
    # a neighbour at g = 0.35 (region 3): the edge entry's side changes both counts
    pred = np.array([[x, np.log(0.35 / 0.65), -3.0]], np.float32)
    case = Case("c", 10, 0.0, None, [Call(pred, np.zeros_like(pred), np.ones_like(pred))])
    out = check_reference_value(case, lambda **kw: _float32_floor_port(**kw), "paper")
    assert not out.ok and out.edge, out.message
    wrong = lambda **kw: (lambda p, t, w: (lambda r: (r[0] * 1.5, r[1]))(_float32_floor_port()(p, t, w)))  # noqa: E731
    out = check_reference_value(case, wrong, "paper")
    assert not out.ok and not out.edge, "a real disagreement must not hide behind an edge"


# ---------------------------------------------------------------- the CLI

def _run_cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "ghm_conformance", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def test_cli_passing_port_exits_0_and_writes_matching_reports(tmp_path):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    proc = _run_cli("zoo:paper_port", "--max-examples", "5", "--report", str(md), "--json", str(js))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Dialect verdict: **paper**" in proc.stdout
    assert md.read_text().strip() == proc.stdout.strip(), "--report holds what was printed"
    doc = json.loads(js.read_text())
    (t,) = doc["targets"]
    assert t["verdict"] == "paper" and t["passed"] and doc["exit_status"] == 0
    assert "] 1/" in proc.stderr, "a progress line is printed while properties run"
    for p in t["properties"]:
        assert f"| {p['property']}: {p['title']} |" in proc.stdout


def test_cli_failing_port_exits_1_with_a_repro_that_runs(tmp_path):
    js = tmp_path / "r.json"
    proc = _run_cli("zoo:drops_saturated", "--dialect", "mmdet", "--max-examples", "10", "--json", str(js))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "### saturated failed" in proc.stdout and "Repro:" in proc.stdout
    doc = json.loads(js.read_text())
    (sat,) = [p for p in doc["targets"][0]["properties"] if p["property"] == "saturated"]
    ce = sat["counterexample"]
    assert sum(np.size(c["pred"]) for c in ce["calls"]) <= 3
    repro = subprocess.run([sys.executable, "-c", ce["repro"]], capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)])), timeout=120)
    assert repro.returncode == 0, repro.stderr
    assert "port:" in repro.stdout and "reference loss:" in repro.stdout


@pytest.mark.parametrize("args, message", [
    (["nonexistent_pkg_xyz:make_port"], "cannot import"),
    (["zoo:no_such_factory"], "has no attribute"),
    (["zoo:not_callable"], "not callable"),
    (["zoo"], "package.module:make_port"),
    (["zoo:paper_port", "--loss", "x"], "invalid choice"),
    (["zoo:paper_port", "--max-examples", "0"], "max-examples"),
])
def test_cli_usage_errors_exit_2_without_traceback(args, message):
    proc = _run_cli(*args)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_in_process_ghm_r_port():
    assert main(["zoo:ghm_r_mmdet_port", "--loss", "r", "--max-examples", "5", "--quiet"]) == 0


def test_cli_default_target_checks_the_bundled_losses(tmp_path):
    js = tmp_path / "r.json"
    proc = _run_cli("--max-examples", "3", "--quiet", "--json", str(js))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(js.read_text())
    names = {t["target"] for t in doc["targets"]}
    expected = {f"{m}.{c}(dialect={d!r})" for m in ("impl_torch", "impl_tf") for c in ("GHMCLoss", "GHMRLoss")
                for d in ("paper", "mmdet")}
    assert names == expected and all(t["passed"] for t in doc["targets"])
    assert {t["verdict"] for t in doc["targets"]} == {"paper", "mmdet"}


def test_float32_rounding_of_the_official_literal_asl1_is_not_a_failure():
    # sqrt(d^2 + mu^2) - mu in float32 cancels for |d| << mu: 4.5e-3 relative error here, which is
    # rounding of a correct formula, not a conformance failure (properties.ROUNDING_ULPS).
    d = np.float32(148e-5)
    pred = np.array([[d, -d]], np.float32)
    case = Case("r", 1, 0.0, 0.5, [Call(pred, np.zeros_like(pred), np.ones_like(pred))])
    literal = make_zoo_port("r", "mmdet", "literal_asl1")
    out = check_reference_value(case, literal, "mmdet")
    assert out.ok, out.message
    x = pred.astype(np.float64)
    exact = float(np.mean(np.sqrt(x * x + 0.25) - 0.5))
    assert abs(literal(bins=1, momentum=0.0, mu=0.5)(pred, np.zeros_like(pred), np.ones_like(pred))[0] - exact) \
        > 1e-3 * exact, "the regime must really be one where the literal form loses accuracy"
    # The allowance is a few float32 ulps of the terms, no more: a port wrong by 0.1% fails as soon
    # as the loss is not itself below float32 resolution (here |d| = 0.3).
    wrong = lambda **kw: (lambda p, t, w: (lambda r: (r[0] * 1.001, r[1]))(literal(**kw)(p, t, w)))  # noqa: E731
    pred = np.array([[0.3, -0.3]], np.float32)
    case = Case("r", 1, 0.0, 0.5, [Call(pred, np.zeros_like(pred), np.ones_like(pred))])
    assert check_reference_value(case, literal, "mmdet").ok
    assert not check_reference_value(case, wrong, "mmdet").ok


def test_float32_cancellation_of_p_minus_t_in_the_gradient_is_not_a_failure():
    # Found by the thorough profile: torch's BCE backward computes sigmoid(10) - 1 in float32,
    # 4.6e-4 relative off the exact gradient. That is rounding, not an error.
    torch = pytest.importorskip("torch")
    from ghm_conformance import from_torch_module
    from impl_torch import GHMCLoss

    pred = np.array([[10.0]], np.float32)
    case = Case("c", 1, 0.0, None, [Call(pred, np.ones_like(pred), np.ones_like(pred))])
    port = from_torch_module(lambda **kw: GHMCLoss(**kw))
    assert check_reference_value(case, port, "paper").ok
    x = torch.tensor(pred, requires_grad=True)
    GHMCLoss(bins=1)(x, torch.ones(1, 1)).backward()
    exact = -1.0 / (1.0 + np.exp(10.0))
    assert abs(x.grad.item() - exact) > 2e-4 * abs(exact), "the regime must really show the cancellation"


def test_gradient_failure_names_the_entry_that_breaks_the_tolerance():
    from ghm_conformance.properties import compare
    from ghm_conformance.protocol import StepOutput

    # entry 0 has the larger absolute difference but is within 2e-4 relative; entry 1 is 1% off
    got = [StepOutput(1.0, np.array([100.015, 1.01]))]
    want = [StepOutput(1.0, np.array([100.0, 1.0]))]
    out = compare(got, want, 2e-4, "the reference")
    assert not out.ok and "flat index 1 " in out.message, out.message
