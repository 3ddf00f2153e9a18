"""The Keras internals impl_keras relies on, isolated in impl_keras/_keras_internals.py (issue 29):
each is checked here against Keras's own behaviour, so that a Keras release that moves or changes
one fails this file, naming it, rather than a user's training run. And nothing else in the
packages touches Keras's private API (``keras.src``, ``_tracker``)."""

import ast
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from impl_keras import _keras_internals as internals  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["impl_keras", "impl_tf", "impl_jax", "impl_torch", "ghm_conformance", "reference", "benchmarks", "examples"]
ISOLATED = ROOT / "impl_keras" / "_keras_internals.py"


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.startswith("keras.src")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append(f"line {node.lineno}: from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr == "_tracker":
            found.append(f"line {node.lineno}: ._tracker")
    return found


def test_no_private_keras_api_outside_the_isolated_module():
    offenders = {
        str(p.relative_to(ROOT)): _private_uses(p)
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if p != ISOLATED
    }
    offenders = {p: uses for p, uses in offenders.items() if uses}
    assert not offenders, f"Keras's private API outside {ISOLATED.name}: {offenders}"
    assert _private_uses(ISOLATED), "the isolated module is where the private imports are"


def test_get_keras_mask_returns_the_mask_a_masking_layer_attached():
    x = np.array([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]]], np.float32)
    masked = keras.layers.Masking(0.0)(x)
    mask = internals.get_keras_mask(masked)
    assert mask is not None, "keras.src.backend.common.masking.get_keras_mask no longer finds Masking's mask"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), [[True, False, True]])
    assert internals.get_keras_mask(keras.ops.convert_to_tensor(x)) is None


def test_get_stateless_scope_returns_the_active_keras_stateless_scope():
    assert internals.get_stateless_scope() is None
    variable, other = keras.Variable(np.zeros(3, np.float32)), keras.Variable(np.zeros(2, np.float32))
    with keras.StatelessScope(state_mapping=[(variable, np.ones(3, np.float32))]) as scope:
        assert internals.get_stateless_scope() is scope, "get_stateless_scope no longer returns keras.StatelessScope"
        # what _backends.check_state_is_carried reads: a carried variable's value, None for another
        assert scope.get_current_value(variable) is not None
        assert scope.get_current_value(other) is None
    assert internals.get_stateless_scope() is None


def test_in_symbolic_scope_is_true_inside_keras_symbolic_scope():
    assert not internals.in_symbolic_scope()
    with keras.SymbolicScope():
        assert internals.in_symbolic_scope(), "in_symbolic_scope no longer sees keras.SymbolicScope"
    assert not internals.in_symbolic_scope()
