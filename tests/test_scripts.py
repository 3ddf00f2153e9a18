"""The scripts people rerun stay runnable: the benchmark and the figures at toy sizes (their full
runs are not part of the suite), and the examples' entry points."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


def test_benchmark_runs_at_a_tiny_size(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    pytest.importorskip("matplotlib")
    # eager only (the compiled modes' compilation would dominate; they are tested elsewhere)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--sizes",
            "2000",
            "--bins",
            "10",
            "--momentum",
            "0",
            "--repeats",
            "1",
            "--modes",
            "eager",
            "--no-memory",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "results.md").read_text()
    for row in ("## GHM-C", "## GHM-R", "torch eager", "tf eager", "official loop"):
        assert row in text, row
    assert (tmp_path / "results.png").stat().st_size > 0, "the benchmark plot was not written"
    mem = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "torch",
            "eager",
            "GHM-C (impl_torch)",
            "c",
            "20000",
            "30",
            "0",
            "cpu",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=300,
    )
    assert mem.returncode == 0 and '"peak_mb"' in mem.stdout, mem.stderr[-2000:]


def test_figures_run_at_a_tiny_size(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.figures", "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("gradient_norm.png", "regression.png", "beta.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_comparison_runs_quick_with_ablations_and_reruns(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("pycocotools")
    from benchmarks.comparison import MAIN_PAIRS

    def run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.comparison", "--quick", "--out", str(tmp_path), *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=ENV,
            timeout=900,
        )

    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("runs.json", "results.md", "training.png", "diagnostics.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    import json

    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [r["name"] for r in runs] == [" + ".join(p) for p in MAIN_PAIRS]
    ghm = runs[-1]["runs"][0]["history"][0]
    for key in ("g_mass", "gr_mass", "cls_counts", "cls_beta", "box_grad_mass", "cls_nonempty"):
        assert key in ghm, f"GHM's diagnostics are logged per window: {key} missing"
    table = (tmp_path / "results.md").read_text()
    for claim in ("focal loss > CE", "GHM-C >= focal loss", "GHM-C + GHM-R >= GHM-C + smooth L1"):
        assert f"| {claim} |" in table, claim
    # one ablation against the saved main run, then --only reruns one pair and keeps the others
    ab = run("--ablation", "ghmr-weight-1", "--jobs", "1")
    assert ab.returncode == 0, ab.stderr[-3000:]
    assert "ghmr-weight-1" in (tmp_path / "results.md").read_text()
    again = run("--only", "CE + smooth L1", "--jobs", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / "runs.json").read_text())
    assert rerun[0]["runs"] == runs[0]["runs"], "a rerun of one pair gives its numbers again (paired, deterministic)"
    assert rerun[1:] == runs[1:], "the other pairs' runs are kept"
    more = run("--more-seeds", "--seeds", "3", "--jobs", "1")
    assert more.returncode == 0, more.stderr[-3000:]
    grown = json.loads((tmp_path / "runs.json").read_text())
    for before, after in zip(rerun, grown):
        assert [r["seed"] for r in after["runs"]] == [0, 1, 2] and after["runs"][:2] == before["runs"], after["name"]
    wrong = run("--only", "focal")
    assert wrong.returncode == 2 and "no pair named ['focal']" in wrong.stderr, wrong.stderr[-2000:]


def test_ddp_example_gives_each_rank_its_share_of_the_global_batch_loss(tmp_path):
    # Each rank's own value (not an all-reduced one, equal on every rank by construction) is
    # checked: W / N_global * the sum of the global beta_i L_i over that rank's slice (spec.md 11).
    pytest.importorskip("torch")
    import numpy as np

    import reference
    from tolerances import TOLERANCE

    world, steps = 2, 3
    proc = subprocess.run(
        [
            sys.executable,
            "examples/ddp_train.py",
            "--steps",
            str(steps),
            "--world",
            str(world),
            "--dump",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(world)]
    state = None
    for step in range(steps):
        logits = [r[f"logits{step}"] for r in ranks]
        ref = reference.ghm_c(
            np.concatenate(logits),
            np.concatenate([r[f"target{step}"] for r in ranks]),
            bins=10,
            momentum=0.75,
            state=state,
            dialect="mmdet",
            reduction="none",
        )
        state = ref.state
        n_global, start = ref.loss.size, 0
        for r, rank in enumerate(ranks):
            rows = len(logits[r])
            share = world * ref.loss[start : start + rows].sum() / n_global
            np.testing.assert_allclose(
                float(rank[f"share{step}"]), share, **TOLERANCE["float32"], err_msg=f"rank {r}, step {step}"
            )
            start += rows
    assert "global GHM-C loss" in proc.stdout


def test_detector_benchmark_runs_at_a_tiny_size_and_keeps_the_rest_of_results(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("keras_hub")
    results = tmp_path / "results.md"
    results.write_text("# Benchmark\n\nthe loss tables\n")
    # eager only, tiny images (compilation would dominate; the full run is `python -m benchmarks.detector`)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.detector",
            "--modes",
            "eager",
            "--image",
            "64",
            "--keras-image",
            "64",
            "--classes",
            "4",
            "--repeats",
            "1",
            "--output",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert text.startswith("# Benchmark\n\nthe loss tables\n"), "the loss benchmark's tables must be kept"
    for row in ("## Per training iteration", "| torch eager |", "| keras eager |"):
        assert row in text, row


def test_every_ablation_forms_its_setting():
    """Each ablation is the released setting with one change at the main run's rate; AdamW's change
    is the rate itself (it once collided with the main run's rate and never ran)."""
    pytest.importorskip("torch")
    from benchmarks import detection as det
    from benchmarks.comparison import ABLATIONS, ablation_setting

    sizes = det.QUICK
    for key, ab in ABLATIONS.items():
        setting = ablation_setting(key, sizes, chosen_lr=0.02)
        for field, value in ab.change.items():
            assert getattr(setting, field) == value, f"{key}: {field} is {getattr(setting, field)!r}, not {value!r}"
        if "lr" not in ab.change:
            assert setting.lr == 0.02, f"{key}: the main run's rate is kept"


def test_an_ablation_of_every_pair_gets_its_own_claims_table():
    """An ablation that runs all four pairs (AdamW) is a protocol of its own: the report tests the
    paper's claims within it, paired by seed, beside its differences from the released setting."""
    from benchmarks.comparison import CLAIMS, MAIN_PAIRS, name_of, tables

    def runs(aps):
        return [{"seed": s, "test_ap": ap, "test_ap50": ap, "history": []} for s, ap in enumerate(aps)]

    base = {"CE + smooth L1": 0.8, "focal loss + smooth L1": 0.7, "GHM-C + smooth L1": 0.6, "GHM-C + GHM-R": 0.5}
    main = [
        {
            "name": name_of(p),
            "chosen": 0.02,
            "rates": {"0.01": 0.1, "0.02": 0.2},
            "setting": {"epochs": 12},
            "runs": runs([base[name_of(p)] + 0.01 * s for s in range(3)]),
        }
        for p in MAIN_PAIRS
    ]
    # under the ablation focal loss beats CE by 0.1 on every seed; the order of the runs does not matter
    shifted = {"CE + smooth L1": 0.5, "focal loss + smooth L1": 0.6, "GHM-C + smooth L1": 0.6, "GHM-C + GHM-R": 0.6}
    pairs = [{"name": name_of(p), "runs": runs([shifted[name_of(p)] + 0.02 * s for s in range(3)])} for p in MAIN_PAIRS]
    pairs[0]["runs"].reverse()
    text = tables(main, [{"ablation": "adamw", "what": "AdamW", "pairs": pairs}])
    section = text[text.index("claims under the `adamw` ablation") :]
    focal = next(line for line in section.splitlines() if line.startswith("| focal loss > CE |"))
    assert "+0.100, +0.100, +0.100" in focal and "reproduced" in focal, focal
    assert all(f"| {claim} |" in section for _, _, _, claim in CLAIMS)
    partial = tables(main, [{"ablation": "mu", "what": "mu", "pairs": pairs[3:]}])
    assert "claims under the `mu` ablation" not in partial, "an ablation of one pair tests no claim between pairs"
