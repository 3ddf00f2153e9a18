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
    # eager only (the compiled modes' compilation would dominate; they are tested elsewhere)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--sizes", "2000", "--bins", "10", "--momentum", "0",
                           "--repeats", "1", "--modes", "eager", "--no-memory", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "results.md").read_text()
    for row in ("## GHM-C", "## GHM-R", "torch eager", "tf eager", "official loop"):
        assert row in text, row
    assert (tmp_path / "results.png").exists() or "matplotlib" in proc.stderr
    mem = subprocess.run([sys.executable, "-m", "benchmarks.memory", "torch", "eager", "GHM-C (impl_torch)", "c", "20000",
                          "30", "0", "cpu"], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert mem.returncode == 0 and '"peak_mb"' in mem.stdout, mem.stderr[-2000:]


def test_figures_run_at_a_tiny_size(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.figures", "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("gradient_norm.png", "regression.png", "beta.png", "training.png", "results.md"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_ddp_example_prints_the_same_loss_on_both_ranks():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, "examples/ddp_train.py", "--steps", "2"], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("rank")]
    for step in range(2):
        values = {line.split("loss ")[1].split()[0] for line in lines if f"step {step}:" in line}
        assert len(values) == 1 and len([line for line in lines if f"step {step}:" in line]) == 2, lines
