"""Proving the conformance kit: it judges every port of the zoo right (the official code and the
correct ports written like it conform, with their dialect and the note they deserve; each faulty
port fails the property that judges its fault), its counterexamples replay the failure and exit
1 while it fails, edge-only disagreements stay apart, and its CLI and pytest entry point report,
exit and survive misbehaving ports."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import examples
from ghm_conformance import FAILED, PASSED, assert_conforms, run_catalogue, run_property
from ghm_conformance import cases as cs
from ghm_conformance.cases import Call, Case, as_class_index_case
from ghm_conformance.cli import main
from ghm_conformance.properties import BY_ID, CATALOGUE, Property, check_reference_value
from ghm_conformance.protocol import Port
from ghm_conformance.report import to_json, to_markdown
from ghm_conformance.repro import replay, snippet
from reference import equations as eq
from zoo import BY_NAME, ZOO, LiteralASL1, MasksFirst, port

TESTS = Path(__file__).parent
ROOT = TESTS.parent
ENV = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    ),
)


def _needs(module):
    if module:
        pytest.importorskip(module)


# ---------------------------------------------------------------- the zoo


def test_the_documented_adapters_are_exported():
    # README and spec.md show `from ghm_conformance import from_jax_function` (and its siblings)
    import ghm_conformance
    from ghm_conformance import from_jax_function, from_keras_loss, from_torch_module  # noqa: F401

    for name in (
        "from_jax_function",
        "from_keras_loss",
        "from_torch_module",
        "from_torch_function",
        "from_numpy_function",
        "from_weights",
        "assert_conforms",
    ):
        assert name in ghm_conformance.__all__ and callable(getattr(ghm_conformance, name)), name


@pytest.mark.parametrize("zoo_port", ZOO, ids=lambda z: z.name)
def test_zoo_port_gets_the_right_verdict_and_failure(zoo_port):
    _needs(zoo_port.needs)
    report = run_catalogue(zoo_port.factory(), zoo_port.loss_kind, max_examples=examples())
    v = report.verdict
    if zoo_port.verdict is not None:
        assert v.label == zoo_port.verdict, f"{zoo_port.name}: {v.summary}"
    if zoo_port.fails is None:
        assert report.passed and not v.faults, f"{zoo_port.name} is correct, yet: {v.summary}"
        assert v.notes == ([zoo_port.note] if zoo_port.note else []), f"{zoo_port.name}: {v.summary}"
        assert report.conforms(strict=True) == (zoo_port.note is None), "--strict fails exactly the notes"
        return
    assert not report.passed
    assert zoo_port.fails in v.faults, f"{zoo_port.name} should fail {zoo_port.fails!r}: {v.summary}"
    (row,) = [r for r in report.counted_rows() if r.property.id == zoo_port.fails]
    assert row.counterexample.outcome.message


def test_the_issue_examples_are_caught_whatever_the_seed():
    # an edge-closed region test fails on g = 1/2 exactly; the fixed corpus runs first, so the
    # verdict cannot hinge on the seed (the random search found it only with some seeds before)
    for seed in (None, 1, 2):
        report = run_catalogue(
            BY_NAME["edge_closed (lo <= g <= hi)"].make_port, "c", max_examples=3, seed=seed, only=("value",)
        )
        assert "value" in report.verdict.faults
    c = report.results[0].counterexample.case
    assert c.calls[0].size <= 6 and np.any(c.calls[0].pred == 0.0)


def test_a_nan_on_the_empty_call_is_all_masked_s_finding_not_a_dialect_change():
    report = run_catalogue(
        BY_NAME["unguarded_n (NaN when every entry is masked)"].make_port, "c", max_examples=examples()
    )
    assert report.verdict.label == "mmdet" and report.verdict.faults == ["all_masked"]
    assert report.verdict.summary.startswith("dialect: mmdet; fails: all_masked; notes: ")


def test_every_masking_fault_is_caught_with_finite_values_in_the_masked_entries():
    # The finite 'masked' property alone (no NaN anywhere) must name every masking bug; a port
    # that only reads NaN from masked entries is a note of 'masked_unread', never a 'masked' fault.
    for name in (
        "masked_weighted",
        "masked_in_histogram",
        "mask taken from each row's first column",
        "masked entries counted in the loss's N",
        "gradient leaks into masked entries",
    ):
        result = run_property(BY_ID["masked"], Port(BY_NAME[name].make_port), "c", "mmdet", max_examples=examples())
        assert result.status == FAILED, name
        for run in result.counterexample.outcome.runs:
            for call in run.calls:
                assert np.isfinite(call.pred).all() and np.isfinite(call.target).all(), f"{name}: NaN was needed"
    result = run_property(
        BY_ID["masked"], Port(BY_NAME["official style in NumPy"].make_port), "c", "mmdet", max_examples=examples()
    )
    assert result.status == PASSED, result.counterexample.outcome.message if result.counterexample else result.note


# ---------------------------------------------------------------- counterexamples that replay


def _position_dependent(*, bins, momentum, **hyper):
    step = port(MasksFirst)(bins=bins, momentum=momentum, **hyper)

    def run(pred, target, lw):  # drops the last entry from the histogram: order matters
        w = lw.copy()
        w.reshape(-1)[-1] = 0.0
        return step(pred, target, w) if pred.size > 1 else step(pred, target, lw)

    return run


def _normalised_twice(*, bins, momentum, **hyper):
    step = port(MasksFirst)(bins=bins, momentum=momentum, **hyper)

    def run(pred, target, lw):
        loss, grad = step(pred, target, lw)
        n = max(float((lw > 0).sum()), 1.0)
        return loss / n, grad / n

    return run


def _off_by_one_counts(*, bins, momentum, **hyper):
    step = port(MasksFirst)(bins=bins, momentum=momentum, **hyper)

    def run(pred, target, lw):
        loss, grad = step(pred, target, lw)
        return loss * 1.25 if bins > 1 else loss, grad

    return run


def _one_region_zero(*, bins, momentum, **hyper):
    step = port(MasksFirst)(bins=bins, momentum=momentum, **hyper)
    return lambda pred, target, lw: (0.0, np.zeros_like(pred)) if bins == 1 else step(pred, target, lw)


FAILING_FOR = {  # property -> a port that fails it
    "value": BY_NAME["edge_closed (lo <= g <= hi)"].make_port,
    "ema": BY_NAME["ema_clamped"].make_port,
    "ema_empty": BY_NAME["ema_init_on_empty (an empty first call)"].make_port,
    "saturated": BY_NAME["drops_saturated"].make_port,
    "scale": BY_NAME["float16_counts"].make_port,
    "uniform": _off_by_one_counts,
    "one_region": _one_region_zero,
    "permutation": _position_dependent,
    "duplication": _normalised_twice,
    "masked": BY_NAME["masked_in_histogram"].make_port,
    "weight_mask": BY_NAME["weight_multiplied"].make_port,
    "all_masked": BY_NAME["unguarded_n (NaN when every entry is masked)"].make_port,
    "finite_diff": BY_NAME["grad_unweighted"].make_port,
    "masked_unread": BY_NAME["official style in NumPy"].make_port,
    "independent_instances": BY_NAME["EMA held by the class (shared by every instance)"].make_port,
}


def test_every_property_has_a_failing_port_for_its_repro_test():
    assert set(FAILING_FOR) == {p.id for p in CATALOGUE}


@pytest.mark.parametrize("property_id", list(FAILING_FOR))
def test_the_repro_replays_the_failure_and_exits_1(property_id, tmp_path):
    prop = BY_ID[property_id]
    dialect = "paper" if property_id == "ema_empty" else "mmdet"
    # the repro runs in a fresh interpreter: a state shared by every instance (independent_instances)
    # must show there too, from that process's first instance on
    result = run_property(prop, Port(FAILING_FOR[property_id]), "c", dialect, max_examples=examples())
    assert result.status == FAILED, f"{property_id}: {result.note}"
    ce = result.counterexample
    module = tmp_path / "failing_port.py"
    module.write_text(f"from test_conformance_kit import FAILING_FOR\nmake_port = FAILING_FOR[{property_id!r}]\n")
    code = snippet(property_id, dialect, ce.case, "from failing_port import make_port")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=dict(ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), ENV["PYTHONPATH"]])),
    )
    out = proc.stdout
    assert proc.returncode == 1, f"a repro that prints FAILED must exit 1: {proc.returncode}\n{out[-2000:]}"
    assert "FAILED: " + ce.outcome.message.split(":")[0] in out, out[-3000:]
    assert "MISMATCH" in out, out[-3000:]
    # every call the port received is shown (the transformed input, not the drawn one)
    assert out.count("call ") >= sum(len(run.calls) for run in ce.outcome.runs)


def test_a_state_shared_by_every_instance_fails_independent_instances_and_its_repro_replays_both(tmp_path):
    # An EMA held by the class passes every single-instance check the first time it runs in a
    # process; two fresh instances given the same calls show it, and the repro replays both, in a
    # fresh interpreter whose first instance starts clean.
    shared = BY_NAME["EMA held by the class (shared by every instance)"].make_port
    result = run_property(BY_ID["independent_instances"], Port(shared), "c", "mmdet", max_examples=examples())
    assert result.status == FAILED and [r.label for r in result.counterexample.outcome.runs] == [
        "first instance",
        "second instance, after the first",
    ]
    own = run_property(BY_ID["independent_instances"], Port(port(MasksFirst)), "c", "mmdet", max_examples=examples())
    assert own.status == PASSED, own.note
    code = snippet(
        "independent_instances", "mmdet", result.counterexample.case, "from zoo import shared_ema as make_port"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ENV
    )
    assert proc.returncode == 1 and "MISMATCH" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "run 1 'first instance'" in proc.stdout and "run 2 'second instance, after the first'" in proc.stdout


def test_the_repro_of_a_passing_case_exits_0(tmp_path):
    case = Case("c", 2, 0.0, None, [Call(*(np.array([[v]], np.float32) for v in (1.0, 0.0, 1.0)))])
    code = snippet("value", "mmdet", case, "from zoo import masks_first as make_port")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert proc.returncode == 0 and "passed" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_the_report_shows_the_calls_as_the_port_received_them():
    result = run_property(BY_ID["all_masked"], Port(FAILING_FOR["all_masked"]), "c", "mmdet", max_examples=examples())
    (run,) = result.counterexample.outcome.runs
    assert not np.any(run.calls[0].label_weight), "the all-masked call is shown with its zero label weights"


def test_a_port_that_raises_on_masked_nan_is_a_note_shown_up_to_the_call_that_raised():
    make_port = BY_NAME["crashes on a masked NaN (gathers by its index)"].make_port
    report = run_catalogue(make_port, "c", dialect="mmdet", max_examples=examples(), only=("masked", "masked_unread"))
    assert not report.verdict.faults, report.verdict.summary
    assert report.verdict.notes == ["reads masked values (raises IndexError on NaN/Inf there)"]
    ce = report.results[1].counterexample
    assert "IndexError" in ce.outcome.message
    last = ce.outcome.runs[-1]
    assert last.raised and "IndexError" in last.raised and len(last.outputs) == len(last.calls) - 1
    assert np.isnan(last.calls[-1].pred[last.calls[-1].label_weight == 0]).any(), (
        "the call that raised is shown with the masked NaN it received"
    )
    text = to_markdown(to_json([report], {report.target: "from zoo import crashes"}, 0, []))
    assert "port raised IndexError" in text and "### masked_unread note" in text, text
    out = []
    replayed = replay("masked_unread", make_port, ce.case, dialect="mmdet", out=out.append)
    shown = "\n".join(out)
    assert "port raised IndexError" in shown and "MISMATCH" in shown and "FAILED" in shown, shown
    assert replayed.exit_status == 1


def test_class_index_adaptation_keeps_the_g_each_entry_was_drawn_with():
    # Shrunk from a failing run: a soft target 0.35 at p = 0.1 (g = 0.25, clear of the edges) made
    # background (t = 0) gave g = 0.1 to within float32 rounding, an edge, in the EMA property
    # (which has no edge excuse): the class-index port "failed" ema for the kit's own rounding.
    f32 = lambda v: np.array([[v]], np.float32)  # noqa: E731
    calls = [Call(f32(-4.184591293334961), f32(0.0), f32(1.0)), Call(f32(np.log(0.1 / 0.9)), f32(0.35), f32(1.0))]
    case = Case("c", 10, 0.5, None, calls)
    adapted = as_class_index_case(case)
    for before, after in zip(case.calls, adapted.calls):
        g_before = cs.gradient_norm("c", before.pred, before.target, None)[:, 0]
        g_after = cs.gradient_norm("c", after.pred, after.target, None)[:, 0]
        np.testing.assert_allclose(g_after, g_before, atol=1e-6, err_msg="the adapted entry has another g")
        assert not cs.near_edge(g_after, case.bins).any()
    make_port = BY_NAME["class indices (N,) with C = background"].factory()
    outcome = BY_ID["ema"].check(adapted, Port(make_port, class_index=True), "mmdet")
    assert outcome.passed, outcome.message


# ---------------------------------------------------------------- checks that can fail


def test_finite_differences_fail_a_nan_gradient():
    # NaN > tolerance is False: a NaN gradient (or loss) once scored 0 error and passed
    from kit_ports import nan_gradient

    result = run_property(BY_ID["finite_diff"], Port(nan_gradient), "c", "mmdet", max_examples=examples())
    assert result.status == FAILED and "nan" in result.counterexample.outcome.message.lower()


def test_a_faulty_ghm_c_port_that_looks_like_ghm_r_is_judged_not_refused(tmp_path):
    proc = _run_cli("kit_ports:ghm_c_that_looks_like_ghm_r", "--max-examples", "3", timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "did you mean --loss r?" in proc.stdout and "fails: value" in proc.stdout, proc.stdout[-3000:]


@pytest.mark.slow
def test_float32_counts_accumulated_one_by_one_fail_large_and_correct_counts_pass():
    # spec.md 10: a float32 counter stalls at 2^24; --large's one call of 2^24 + 2^22 + 3 entries shows it
    stalls = run_catalogue(
        BY_NAME["float32 counts accumulated one by one (wrong only past 2^24)"].make_port,
        "c",
        dialect="mmdet",
        max_examples=1,
        only=("large",),
        large=True,
        timeout=600,
    )
    assert stalls.verdict.faults == ["large"], stalls.verdict.summary
    exact = run_catalogue(
        BY_NAME["masks before the loss (no note)"].make_port,
        "c",
        dialect="mmdet",
        max_examples=1,
        only=("large",),
        large=True,
        timeout=600,
    )
    assert not exact.verdict.faults and exact.results[0].status == PASSED, exact.verdict.summary


@pytest.mark.slow
def test_cli_large_checks_the_bundled_loss_past_two_to_the_24():
    # the CLI's --large path, on one backend: every backend's counts past 2^24 are checked in
    # test_losses.py::test_counts_are_exact_past_two_to_the_24
    pytest.importorskip("torch")
    proc = _run_cli(
        "--loss",
        "c",
        "--dialect",
        "mmdet",
        "--large",
        "--max-examples",
        "2",
        "--quiet",
        "--bundled",
        "torch",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("| large: ") == 1, "one `large` row: the torch GHM-C in the mmdet dialect"
    assert "Cost at 20,971,523 entries (large)" in proc.stdout


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


def test_an_inexact_g_within_rounding_of_an_edge_is_its_own_category():
    x = _edge_pred()
    # a neighbour at g = 0.35 (region 3): the edge entry's side changes both counts
    pred = np.array([[x, np.log(0.35 / 0.65), -3.0]], np.float32)
    case = Case("c", 10, 0.0, None, [Call(pred, np.zeros_like(pred), np.ones_like(pred))])
    out = check_reference_value(case, Port(lambda **kw: _float32_floor_port(**kw)), "paper")
    assert not out.passed and out.edge, out.message
    wrong = lambda **kw: lambda p, t, w: (lambda r: (r[0] * 1.5, r[1]))(_float32_floor_port()(p, t, w))  # noqa: E731
    out = check_reference_value(case, Port(wrong), "paper")
    assert not out.passed and not out.edge, "a real disagreement must not hide behind an edge"


def test_a_g_exactly_on_an_edge_is_never_excused():
    # pred = 0 gives g = 1/2 exactly: exact values decide the edge semantics (spec.md 8)
    case = Case("c", 2, 0.0, None, [Call(*(np.array([[v]], np.float32) for v in (0.0, 0.0, 1.0)))])
    out = check_reference_value(case, Port(BY_NAME["edge_closed (lo <= g <= hi)"].make_port), "mmdet")
    assert not out.passed and not out.edge


# ---------------------------------------------------------------- the rounding model


def test_float32_rounding_of_the_official_literal_asl1_is_not_a_failure():
    # sqrt(d^2 + mu^2) - mu in float32 cancels for |d| << mu: 4.5e-3 relative error here, which is
    # rounding of a correct formula, not a conformance failure (tolerances.ROUNDING_ULPS).
    d = np.float32(148e-5)
    pred = np.array([[d, -d]], np.float32)
    case = Case("r", 1, 0.0, 0.5, [Call(pred, np.zeros_like(pred), np.ones_like(pred))])
    literal = port(LiteralASL1)
    assert check_reference_value(case, Port(literal), "mmdet").passed
    x = pred.astype(np.float64)
    exact = float(np.mean(np.sqrt(x * x + 0.25) - 0.5))
    assert (
        abs(literal(bins=1, momentum=0.0, mu=0.5)(pred, np.zeros_like(pred), np.ones_like(pred))[0] - exact)
        > 1e-3 * exact
    ), "the regime must really be one where the literal form loses accuracy"
    # The allowance is a few float32 ulps of the terms, no more: a port wrong by 0.1% fails as soon
    # as the loss is not itself below float32 resolution (here |d| = 0.3).
    wrong = lambda **kw: lambda p, t, w: (lambda r: (r[0] * 1.001, r[1]))(literal(**kw)(p, t, w))  # noqa: E731
    pred = np.array([[0.3, -0.3]], np.float32)
    case = Case("r", 1, 0.0, 0.5, [Call(pred, np.zeros_like(pred), np.ones_like(pred))])
    assert check_reference_value(case, Port(literal), "mmdet").passed
    assert not check_reference_value(case, Port(wrong), "mmdet").passed


def test_float32_cancellation_of_p_minus_t_in_the_gradient_is_not_a_failure():
    # torch's BCE backward computes sigmoid(10) - 1 in float32, 4.6e-4 relative off the exact
    # gradient. That is rounding, not an error.
    torch = pytest.importorskip("torch")
    from ghm_conformance import from_torch_module

    pred = np.array([[10.0]], np.float32)
    case = Case("c", 1, 0.0, None, [Call(pred, np.ones_like(pred), np.ones_like(pred))])
    bce = from_torch_module(lambda **kw: lambda x, t, w: torch.nn.functional.binary_cross_entropy_with_logits(x, t))
    assert check_reference_value(case, Port(bce), "paper").passed
    x = torch.tensor(pred, requires_grad=True)
    torch.nn.functional.binary_cross_entropy_with_logits(x, torch.ones(1, 1)).backward()
    exact = -1.0 / (1.0 + np.exp(10.0))
    assert abs(x.grad.item() - exact) > 2e-4 * abs(exact), "the regime must really show the cancellation"


def test_gradient_failure_names_the_entry_that_breaks_the_tolerance():
    from ghm_conformance.expected import Expected
    from ghm_conformance.outcome import Run, judge
    from ghm_conformance.protocol import StepOutput

    # entry 0 has the larger absolute difference but is within 2e-4 relative; entry 1 is 1% off
    run = Run("calls", [], [StepOutput(1.0, np.array([100.015, 1.01]))])
    out = judge([run], {(0, 0): Expected(1.0, np.array([100.0, 1.0]), "the reference")})
    assert not out.passed and "flat index 1 " in out.message, out.message


# ---------------------------------------------------------------- the runner never passes by accident


def test_a_property_that_cannot_draw_an_input_is_an_error_not_a_pass():
    prop = Property("never", "draws nothing", lambda k: st.integers().filter(lambda v: False), check_reference_value)
    result = run_property(prop, Port(port(MasksFirst)), "c", "mmdet", max_examples=5)
    assert result.status == "error" and ("Unsatisfiable" in result.note or "FailedHealthCheck" in result.note)


def test_a_port_that_exits_fails_in_process():
    from kit_ports import exits

    report = run_catalogue(exits, "c", dialect="mmdet", max_examples=3, only=("value",))
    assert not report.passed
    assert "sys.exit" in report.results[0].counterexample.outcome.message


# ---------------------------------------------------------------- the pytest entry point (assert_conforms)


def test_assert_conforms_passes_with_notes_and_fails_with_the_verdict_and_a_repro():
    official = BY_NAME["official style in NumPy"].make_port
    report = assert_conforms(official, loss="c", max_examples=3)
    assert report.verdict.notes, "passes, with its note, where the CLI exits 0"
    with pytest.raises(AssertionError, match="masked_unread failed") as strict:
        assert_conforms(official, loss="c", max_examples=3, strict=True)
    head = str(strict.value).splitlines()[0]
    assert head.startswith(
        "the GHM-C port conforms to the mmdet dialect, but strict=True makes its robustness "
        "notes fail: reads masked values"
    ), head
    assert "does not conform" not in head
    with pytest.raises(AssertionError) as failure:
        assert_conforms(
            BY_NAME["unguarded_n (NaN when every entry is masked)"].make_port,
            loss="c",
            max_examples=3,
            import_line="from zoo import unguarded_n as make_port",
        )
    message = str(failure.value)
    assert "does not conform: dialect: mmdet; fails: all_masked" in message
    assert "raise SystemExit(replay('all_masked', make_port, case" in message and "from zoo import" in message


# A port author's test file, as docs/checking-a-port.md shows it (there with a port defined in the
# file; here the port imported from the author's own module, so that the repro must name it)
_AUTHOR_TEST = """\
# test_ghm_conformance.py, in your repository: the kit checks your port in your CI
from ghm_conformance import assert_conforms

from my_ghm import GHMPort  # your port factory: GHMPort(*, bins, momentum) -> step(pred, target, label_weight)


def test_my_ghm_port_conforms_to_the_reference():
    assert_conforms(GHMPort, loss="c", dialect="mmdet")  # strict=True: robustness notes fail too
"""


def _author_test() -> str:
    page = (ROOT / "docs" / "checking-a-port.md").read_text(encoding="utf-8")
    assert "# test_ghm_conformance.py" in page and "assert_conforms(" in page, "the page shows a port author's test"
    return _AUTHOR_TEST


@pytest.mark.parametrize(
    "which, passes", [("official style in NumPy", True), ("unguarded_n (NaN when every entry is masked)", False)]
)
def test_the_documented_pytest_example_runs_in_a_port_authors_repository(which, passes, tmp_path):
    # The documented example, copied as a port author would, with their port in my_ghm.py
    name = {True: "official_style", False: "unguarded_n"}[passes]
    (tmp_path / "my_ghm.py").write_text(f"from zoo import {name} as GHMPort\n")
    (tmp_path / "test_ghm_conformance.py").write_text(_author_test())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_ghm_conformance.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=dict(ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), ENV["PYTHONPATH"]])),
    )
    if passes:
        assert proc.returncode == 0, proc.stdout[-3000:]
    else:
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert "fails: all_masked" in proc.stdout and "replay('all_masked'" in proc.stdout, proc.stdout[-3000:]
        # the repro imports the port from where it is defined, not from the test file, and binds it once
        assert "from zoo import unguarded_n" in proc.stdout, proc.stdout[-3000:]
        assert "from test_ghm_conformance import" not in proc.stdout and "make_port = make_port" not in proc.stdout


# ---------------------------------------------------------------- the CLI


def _run_cli(*args, cwd=ROOT, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ghm_conformance", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=timeout,
    )


def test_the_cost_baseline_is_the_port_s_framework_measured_as_the_port_is():
    pytest.importorskip("torch")
    from ghm_conformance.measure import bundled_measurement, measure
    from ghm_conformance.targets import bundled_port

    pred = np.linspace(-3, 3, 64, dtype=np.float32).reshape(16, 4)
    case = Case("c", 10, 0.0, None, [Call(pred, (pred > 0).astype(np.float32), np.ones_like(pred))])
    baseline = bundled_measurement(case, "mmdet", "torch")
    assert baseline.name == "impl_torch.GHMCLoss" and baseline.first_seconds is not None
    assert bundled_measurement(case, "mmdet", None).name == "impl_torch.GHMCLoss", "unknown framework: torch"
    # the port and the baseline go through one function: the same code is measured the same way
    same = measure("the port", Port(bundled_port("torch", "c", "mmdet")), case)
    assert same.entries == baseline.entries == 64 and same.first_seconds is not None


def test_cli_passing_port_exits_0_and_writes_matching_reports(tmp_path):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    proc = _run_cli("zoo:paper_port", "--max-examples", "5", "--report", str(md), "--json", str(js))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict: **conforms: paper**" in proc.stdout
    assert md.read_text().strip() == proc.stdout.strip(), "--report holds what was printed"
    doc = json.loads(js.read_text())
    (t,) = doc["targets"]
    assert t["verdict"]["dialect"] == "paper" and t["passed"] and doc["exit_status"] == 0
    assert "] 1/" in proc.stderr and "ms per call" in proc.stderr, "progress lines with the time per call"
    assert t["time_per_call"]["calls"] > 0 and t["scale"][0]["entries"] == 100_003
    names = [m["name"] for m in t["scale"][0]["measurements"]]
    assert names[0] == "the port" and (len(names) == 1 or names[1].startswith("impl_"))
    for p in t["properties"]:
        assert f"| {p['property']}: {p['title']} |" in proc.stdout


def test_a_passing_report_reads_right():
    # The other dialect's rows inform the verdict: they are never "failed", in the table or in the
    # progress lines; numbers are formatted (no 0.0000000000000000000000000043782554, no None).
    proc = _run_cli("zoo:paper_port", "--max-examples", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (proc.stdout, proc.stderr):
        assert "failed" not in text.lower() and "FAIL" not in text, text[-3000:]
        assert "None" not in text and "0.00000000" not in text
    assert "other dialect: differs" in proc.stdout
    # progress words hold whatever the verdict: a reference row says whether the port agrees with
    # that reference, and the last line gives the verdict the table gives
    assert "value[mmdet]: differs from the mmdet reference" in proc.stderr
    assert "value[paper]: agrees with the paper reference" in proc.stderr
    assert "verdict: conforms: paper" in proc.stderr.strip().splitlines()[-1]


def test_cli_official_style_conforms_with_a_note_and_strict_makes_it_fail():
    proc = _run_cli("zoo:official_style", "--max-examples", "3", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "conforms: mmdet; notes: reads masked values (NaN/Inf there propagates)" in proc.stdout
    strict = _run_cli("zoo:official_style", "--max-examples", "3", "--quiet", "--strict")
    assert strict.returncode == 1 and "--strict: notes count" in strict.stdout


def test_cli_failing_port_exits_1_with_a_repro_that_replays_it(tmp_path):
    js = tmp_path / "r.json"
    proc = _run_cli("zoo:edge_closed", "--max-examples", "5", "--json", str(js))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "### value failed" in proc.stdout and "Repro" in proc.stdout
    # wrong only for an entry exactly on an edge: the dialect is named, with the input class
    assert "dialect: mmdet except g exactly on a region edge; fails: value" in proc.stdout
    doc = json.loads(js.read_text())
    (value,) = [p for p in doc["targets"][0]["properties"] if p["property"] == "value" and p["counts"]]
    repro = subprocess.run(
        [sys.executable, "-c", value["counterexample"]["repro"]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=120,
    )
    assert repro.returncode == 1, repro.stderr
    assert "MISMATCH" in repro.stdout and "FAILED:" in repro.stdout, repro.stdout


JAX_PORTS = [  # (kit_ports.jax_ports factory, the verdict it deserves)
    ("official", "conforms: mmdet (momentum not supported by the port); notes: reads masked values"),
    ("counting_masked", "fails: masked"),
    # the official semantics but for autograd's subgradient at 0: the dialect is named, with the input class
    (
        "max_abs_bce",
        "dialect: mmdet except the gradient at pred = 0 exactly (momentum not supported by the port); fails: value",
    ),
]


@pytest.mark.parametrize("name, verdict", JAX_PORTS, ids=[p[0] for p in JAX_PORTS])
def test_a_jax_port_is_checked_through_from_jax_function(name, verdict, tmp_path):
    # the ports a Flax user writes: mmdetection's GHMC in jax.numpy (conforms, with the official
    # code's note), one that counts masked entries, and one whose cross entropy is
    # max(x, 0) - x t + log1p(exp(-|x|)): JAX differentiates |x| at 0 as 1, so the gradient at
    # x = 0 is wrong, which the kit shrinks to pred = 0 and replays
    pytest.importorskip("jax")
    js = tmp_path / "r.json"
    proc = _run_cli(f"kit_ports.jax_ports:{name}", "--max-examples", "3", "--json", str(js), timeout=300)
    assert verdict in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == (0 if name == "official" else 1), proc.stderr[-2000:]
    if name != "max_abs_bce":
        return
    # finite_diff's corpus holds pred = 0 exactly: the subgradient is found whatever the random draws
    assert re.search(r"fails: value[^;\n]*finite_diff", proc.stdout), proc.stdout[-3000:]
    (value,) = [
        p for p in json.loads(js.read_text())["targets"][0]["properties"] if p["property"] == "value" and p["counts"]
    ]
    assert "(f32([[0]]), " in value["counterexample"]["repro"], (
        "shrunk to pred = 0: " + value["counterexample"]["repro"]
    )
    assert value["input_class"] == "the gradient at pred = 0 exactly" and value["class_confirmed"]
    scale = json.loads(js.read_text())["targets"][0]["scale"][0]["measurements"]
    assert [m["name"] for m in scale] == ["the port", "impl_jax.ghm_c_loss (jit)"], "a JAX port is costed against JAX"
    assert all(m["first_call_seconds"] is not None for m in scale), "compilation is reported apart"
    repro = subprocess.run(
        [sys.executable, "-c", value["counterexample"]["repro"]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=300,
    )
    assert repro.returncode == 1 and "MISMATCH" in repro.stdout, repro.stdout + repro.stderr[-2000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["nonexistent_pkg_xyz:make_port"], "cannot import"),
        (["zoo:no_such_factory"], "has no attribute"),
        (["zoo:not_callable"], "not callable"),
        (["zoo"], "package.module:make_port"),
        (["zoo:paper_port", "--loss", "x"], "invalid choice"),
        (["zoo:paper_port", "--max-examples", "0"], "max-examples"),
        (["zoo:paper_port", "--report", "/nonexistent-dir/r.md"], "cannot write the report"),
        (["zoo:paper_port", "--json", "/nonexistent-dir/r.json"], "cannot write the report"),
        (["kit_ports.exits_at_import:make_port"], "sys.exit"),
        (["kit_ports:ghm_c_rejecting_mu", "--loss", "r"], "--loss c"),
    ],
)
def test_cli_usage_errors_exit_2_without_traceback_and_before_running(args, message):
    proc = _run_cli(*args, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "] 1/" not in proc.stderr, "a usage error must be found before the properties run"


def test_cli_a_ghm_r_port_checked_as_ghm_c_is_judged_with_a_hint():
    proc = _run_cli("kit_ports:ghm_r_with_default_mu", "--max-examples", "3", timeout=300)
    assert proc.returncode == 1 and "did you mean --loss r?" in proc.stdout, proc.stdout[-3000:]


def test_cli_a_port_that_exits_is_a_failure_not_a_success():
    proc = _run_cli("kit_ports:exits", "--max-examples", "3")
    assert proc.returncode == 1 and "sys.exit(0)" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_cli_a_slow_port_ends_the_run_with_a_clear_message():
    proc = _run_cli("kit_ports:slow", "--timeout", "0.3", "--max-examples", "3", timeout=120)
    assert proc.returncode == 1
    assert "The run ended early" in proc.stdout and "over the budget of 0.3 s" in proc.stdout, proc.stdout[-2000:]


def test_cli_interrupted_run_is_no_verdict():
    proc = _run_cli("kit_ports:interrupts", "--max-examples", "3", timeout=120)
    assert proc.returncode == 2 and "interrupted" in proc.stderr


def test_cli_json_to_stdout_and_port_output_kept_apart():
    proc = _run_cli("kit_ports:chatty", "--json", "-", "--max-examples", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert "hello from the port" in doc["targets"][0]["port_output"]
    assert "hello from the port" not in proc.stderr


def test_cli_imports_from_the_current_directory(tmp_path):
    (tmp_path / "my_port.py").write_text(
        "from zoo import MasksFirst, port\nmake_port = port(MasksFirst, dialect='paper')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ghm_conformance", "my_port:make_port", "--max-examples", "3", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cli_declared_port_shapes(tmp_path):
    assert (
        main(
            [
                "zoo:no_label_weight_port",
                "--no-label-weight",
                "--max-examples",
                "3",
                "--quiet",
                "--json",
                str(tmp_path / "a.json"),
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "a.json").read_text())
    rows = {p["property"]: p["status"] for p in doc["targets"][0]["properties"]}
    assert rows["masked"] == rows["all_masked"] == rows["masked_unread"] == "not applicable"
    assert rows["value"] == PASSED


def test_cli_in_process_ghm_r_port():
    assert main(["zoo:ghm_r_mmdet_port", "--loss", "r", "--max-examples", "5", "--quiet"]) == 0


def test_cli_default_target_checks_the_bundled_losses(tmp_path):
    js = tmp_path / "r.json"
    # what the default target covers and reports; one example a property (each JAX shape compiles
    # anew): the bundled losses' own catalogue runs are in test_losses.py
    proc = _run_cli("--max-examples", "1", "--quiet", "--json", str(js))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(js.read_text())
    names = {t["target"] for t in doc["targets"]}
    expected = {
        f"{m}.{c}(dialect={d!r})"
        for m in ("impl_torch", "impl_tf")
        for c in ("GHMCLoss", "GHMRLoss")
        for d in ("paper", "mmdet")
    }
    if importlib.util.find_spec("jax"):
        expected |= {f"impl_jax.{f}(dialect={d!r})" for f in ("ghm_c_loss", "ghm_r_loss") for d in ("paper", "mmdet")}
    assert names == expected and all(t["passed"] for t in doc["targets"])
    # one summary table of every verdict at the end of the Markdown report
    text = to_markdown(doc)
    summary = text[text.index("## Summary") :]
    assert all(f"| {name} |" in summary for name in names), summary
    assert all(not t["verdict"]["notes"] for t in doc["targets"]), "the bundled losses never read masked values"
    assert {t["verdict"]["dialect"] for t in doc["targets"]} == {"paper", "mmdet"}


def _edges_and_neighbours(bins: int, k: int) -> list[float]:
    edge = k / bins
    below, above = float(np.nextafter(edge, 0.0)), float(np.nextafter(edge, 1.0))
    return [edge, below, above, float(np.float32(k) / np.float32(bins))]


@given(
    bins=st.integers(1, 4096),
    data=st.data(),
)
@example(bins=30, data=None)  # g = 1/2 at pred = 0: the large case's 2^24 entries
def test_vectorized_exact_edge_test_equals_rational_arithmetic(bins, data):
    """spec.md 8: g exactly on an edge k/M, decided for a whole call at once (the large case has
    2^24 of them; one Fraction each took two minutes) and held to the rational definition."""
    from fractions import Fraction

    from ghm_conformance.input_class import on_grid

    g = [0.5, 0.25, 2.0**-1074, 2.0**-60, 1.0 - 2.0**-53]
    if data is not None:
        k = data.draw(st.integers(1, max(bins - 1, 1)), label="k")
        g += _edges_and_neighbours(bins, k) if bins > 1 else []
        g += data.draw(st.lists(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True), max_size=20), label="g")
    got = on_grid(np.array(g), bins)
    for value, fast in zip(g, got):
        exact = (Fraction(value) * bins).denominator == 1  # the definition (spec.md 8)
        assert fast == exact, f"g = {value!r} ({value.hex()}), bins = {bins}: on_grid says {fast}"
