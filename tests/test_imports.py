"""Optional dependencies stay optional: reference needs only NumPy, impl_tf never imports torch,
impl_torch never imports TensorFlow."""

import subprocess
import sys

import pytest

CASES = [
    ("reference", ("torch", "tensorflow", "keras", "hypothesis")),
    ("impl_tf", ("torch",)),
    ("impl_torch", ("tensorflow", "keras")),
]


@pytest.mark.parametrize("module, forbidden", CASES)
def test_import_pulls_in_nothing_forbidden(module, forbidden):
    code = (f"import sys, {module}; bad = [m for m in {forbidden!r} if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"importing {module} also imported: {proc.stdout.strip()} {proc.stderr[-500:]}"
