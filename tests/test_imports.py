"""Optional dependencies stay optional: reference needs only NumPy; impl_tf never imports torch or
JAX, impl_torch never TensorFlow or JAX, impl_jax never torch or TensorFlow; impl_keras imports
only the kernels of the backend Keras runs on; ghm_diagnostics needs only NumPy (matplotlib to plot)."""

import subprocess
import sys

import pytest

# (module, the dependencies it may import, modules it must not add to those they import themselves:
# Keras imports JAX when JAX is installed, whichever backend it runs on)
CASES = [
    ("reference", "numpy", ("torch", "tensorflow", "keras", "hypothesis", "jax")),
    ("impl_tf", "tensorflow, keras", ("torch", "jax", "impl_torch", "impl_jax")),
    ("impl_torch", "torch", ("tensorflow", "keras", "jax")),
    ("impl_jax", "jax", ("torch", "tensorflow", "keras")),
    ("impl_keras", "keras", ("torch", "jax", "impl_torch", "impl_jax")),  # on Keras's default backend, TensorFlow
    ("ghm_diagnostics", "numpy", ("torch", "tensorflow", "keras", "jax", "matplotlib")),
]


@pytest.mark.parametrize("module, allowed, forbidden", CASES)
def test_import_pulls_in_nothing_forbidden(module, allowed, forbidden):
    for dependency in allowed.split(", "):
        pytest.importorskip(dependency)
    code = (f"import sys, {allowed}; before = set(sys.modules); import {module}; "
            f"bad = [m for m in {forbidden!r} if m in sys.modules and m not in before]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"importing {module} also imported: {proc.stdout.strip()} {proc.stderr[-500:]}"
