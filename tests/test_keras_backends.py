"""The Keras losses on every Keras 3 backend (spec.md 12): the checks of keras_backend_checks.py,
run once per backend in a process of its own (Keras reads KERAS_BACKEND once, at import). Values
and gradients against the reference, fit / save / reload / continue with the same EMA (with and
without jit_compile), masks and sample weights, a poisoned batch, the JAX state contract, and
keras-hub's RetinaNet training with GHMCLoss / GHMRLoss."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import keras_backend_checks

SCRIPT = Path(__file__).parent / "keras_backend_checks.py"
NEEDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.fixture(scope="module", params=list(NEEDS))
def backend_results(request, tmp_path_factory):
    backend = request.param
    if importlib.util.find_spec(NEEDS[backend]) is None:
        pytest.skip(f"{NEEDS[backend]} is not installed")
    out = tmp_path_factory.mktemp(backend) / "results.json"
    env = dict(os.environ, KERAS_BACKEND=backend)
    if backend == "jax":  # two CPU devices for keras.distribution's data parallelism
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0 and out.exists(), f"the checks did not run on {backend}: {proc.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    assert doc["backend"] == backend, f"Keras ran on {doc['backend']}, not {backend}"
    return doc["results"]


@pytest.mark.parametrize("check", list(keras_backend_checks.CHECKS))
def test_keras_loss_on_every_backend(backend_results, check):
    result = backend_results[check]
    if result.startswith("skip: "):
        pytest.skip(result[len("skip: ") :])
    assert result == "ok", f"\n{result}"
