"""Each kernel piece of impl_torch and impl_tf against the reference function of the same name
(JAX's lax_reference style): one table, one test. A reader goes from an equation of spec.md to
``reference.equations.<name>``, to ``impl_torch``/``impl_tf``'s ``<name>``, to its row here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import reference
from backends import BACKENDS, NEEDS
from reference import equations as eq
from tolerances import TOLERANCE


@dataclass(frozen=True)
class Piece:
    name: str  # the reference function and the kernel function share it
    equation: str
    inputs: Callable[[], st.SearchStrategy]  # -> dict of NumPy inputs
    reference: Callable[..., np.ndarray]
    module: str  # where the kernel piece lives, relative to the backend package
    call: Callable  # (kernel_fn, backend, inputs) -> NumPy array
    exact: bool = False  # integer results: equal, not close
    examples: tuple = ()  # inputs a failing search once found: always tried first


def _floats(lo=None, hi=None, n=(1, 40)):
    """float32 arrays; without bounds, any finite float32 (the kernels must hold at every one)."""
    element = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)
    if lo is None:  # most draws where the loss lives, some anywhere in the float32 range
        element = st.one_of(st.floats(-40, 40, width=32), element)
    return st.lists(element, min_size=n[0], max_size=n[1]).map(lambda v: np.array(v, np.float32))


def _logits_and_targets():
    return st.integers(1, 40).flatmap(
        lambda n: st.fixed_dictionaries({"x": _floats(n=(n, n)), "t": _floats(0, 1, (n, n))})
    )


def _residuals():
    return st.fixed_dictionaries({"d": _floats(), "mu": st.sampled_from([1e-3, 0.02, 0.5, 10.0])})


# Found by the random search (issue 19): softplus(x) - x t cancels for a confident positive,
# 9.1171e-4 for 9.1147e-4 at x = 7, t = 1, and 0 for 3e-7 from x = 15.
CONFIDENT = (
    {
        "x": np.array([7.0, 15.0, 20.0, -7.0, 30.0], np.float32),
        "t": np.array([1.0, 1.0, 1.0, 0.0, 0.99999994], np.float32),
    },
)


def _mid_region_g():
    """g at a region centre +- 0.3 of a region, or exactly on an edge when bins is a power of two
    (k / 2^n is exact in float32; other edges are within rounding and may go either way)."""

    def make(bins, js, offsets):
        dyadic = bins & (bins - 1) == 0
        offsets = [o if o or dyadic else 0.5 for o in offsets]
        return {"g": ((np.array(js) % bins + np.array(offsets)) / bins).astype(np.float32), "bins": bins}

    return st.integers(1, 40).flatmap(
        lambda bins: st.integers(1, 30).flatmap(
            lambda n: st.builds(
                make,
                st.just(bins),
                st.lists(st.integers(0, bins - 1), min_size=n, max_size=n),
                st.lists(st.sampled_from([0.2, 0.5, 0.8, 0.0]), min_size=n, max_size=n),
            )
        )
    )


def _region_indices():
    return st.integers(1, 40).flatmap(
        lambda bins: st.fixed_dictionaries(
            {
                "ind": st.lists(st.integers(0, bins - 1), min_size=0, max_size=60).map(lambda v: np.array(v, np.int32)),
                "bins": st.just(bins),
            }
        )
    )


def _ema_inputs():
    return st.integers(1, 30).flatmap(
        lambda m: st.fixed_dictionaries(
            {
                "s": _floats(0, 1e4, (m, m)),
                "r": st.lists(st.integers(0, 10**6), min_size=m, max_size=m).map(lambda v: np.array(v, np.float32)),
                "alpha": st.sampled_from([0.5, 0.75, 0.9]),
            }
        )
    )


def _harmonize_inputs():
    def make(bins, ind, momentum, dialect, state):
        return {
            "ind": np.array(ind, np.int32),
            "bins": bins,
            "momentum": momentum,
            "dialect": dialect,
            "state": None if state is None else np.array(state[:bins] + [1.0] * (bins - len(state[:bins])), np.float32),
        }

    return st.integers(1, 12).flatmap(
        lambda bins: st.builds(
            make,
            st.just(bins),
            st.lists(st.integers(0, bins - 1), min_size=1, max_size=40),
            st.sampled_from([0.0, 0.75]),
            st.sampled_from(["paper", "mmdet"]),
            st.one_of(st.none(), st.lists(st.floats(0.5, 50, width=32), min_size=bins, max_size=bins)),
        )
    )


# ---------------------------------------------------------------- calling a kernel piece
# ``b`` is a tests/backends.py backend: ``b.tensor`` makes a fresh tensor (region_index consumes
# its input in torch), ``b.impl`` is the package whose pieces are tested.


def _to_np(a):
    if hasattr(a, "detach"):  # torch
        return np.asarray(a.detach().cpu().numpy())
    return np.asarray(a.numpy() if hasattr(a, "numpy") else a)  # tf, or a JAX array


def _harmonize_module(b):
    return importlib.import_module(f"{b.impl.__name__}._harmonize")


def _call_ce(fn, b, i):
    return _to_np(fn(b.tensor(i["x"]), b.tensor(i["t"])))


def _call_asl1(fn, b, i):
    return _to_np(fn(b.tensor(i["d"]), i["mu"]))


def _call_region_index(fn, b, i):
    return _to_np(fn(b.tensor(i["g"]), i["bins"]))


def _call_region_counts(fn, b, i):
    return _to_np(fn(b.tensor(i["ind"]), i["bins"]))[: i["bins"]]


def _call_ema(fn, b, i):
    return _to_np(fn(b.tensor(i["s"]), b.tensor(i["r"]), i["alpha"]))


def _call_harmonize(fn, b, i):
    """beta per entry (the kernel's per-region table gathered) and the new state, flattened."""
    counts = _harmonize_module(b).region_counts(b.tensor(i["ind"]), i["bins"])
    state = (
        None
        if i["momentum"] == 0.0
        else b.tensor(i["state"] if i["state"] is not None else np.zeros(i["bins"], np.float32))
    )
    initialized = None if i["momentum"] == 0.0 else b.tensor(i["state"] is not None)
    beta, new_state, _, _ = fn(
        counts,
        b.tensor(True),
        bins=i["bins"],
        momentum=i["momentum"],
        dialect=i["dialect"],
        dtype=b.float64,
        state=state,
        initialized=initialized,
    )
    per_entry = _to_np(beta)[i["ind"]]
    return per_entry if new_state is None else np.concatenate([per_entry, _to_np(new_state)])


def _ref_harmonize(ind, bins, momentum, dialect, state):
    ref_state = (
        None
        if momentum == 0.0
        else (state.astype(np.float64) if state is not None else (None if dialect == "paper" else np.zeros(bins)))
    )
    beta, new_state = reference.harmonize(ind, bins=bins, momentum=momentum, state=ref_state, dialect=dialect)
    return beta if new_state is None else np.concatenate([beta, new_state])


TABLE = [
    Piece(
        "cross_entropy",
        "Eq. (1)",
        _logits_and_targets,
        lambda x, t: eq.cross_entropy(x, t),
        "ghm_c",
        _call_ce,
        examples=CONFIDENT,
    ),
    Piece(
        "cross_entropy_grad",
        "Eq. (2)",
        _logits_and_targets,
        lambda x, t: eq.cross_entropy_grad(x, t),
        "ghm_c",
        _call_ce,
        examples=CONFIDENT,
    ),
    Piece("asl1", "Eq. (17)", _residuals, lambda d, mu: eq.asl1(d, mu), "ghm_r", _call_asl1),
    Piece("asl1_grad", "Eq. (18)", _residuals, lambda d, mu: eq.asl1_grad(d, mu), "ghm_r", _call_asl1),
    Piece(
        "region_index",
        "Sec. 3.2, spec.md 2.3",
        _mid_region_g,
        lambda g, bins: eq.region_index(g, bins),
        "_harmonize",
        _call_region_index,
        exact=True,
    ),
    Piece(
        "region_counts",
        "Eq. (9)",
        _region_indices,
        lambda ind, bins: eq.region_counts(ind, bins),
        "_harmonize",
        _call_region_counts,
        exact=True,
    ),
    Piece("ema", "Eq. (12)", _ema_inputs, lambda s, r, alpha: eq.ema(s, r, alpha), "_harmonize", _call_ema),
    Piece("harmonize", "Eqs. (10), (13); spec.md 4", _harmonize_inputs, _ref_harmonize, "_harmonize", _call_harmonize),
]


@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("piece", TABLE, ids=lambda p: p.name)
def test_kernel_piece_equals_its_reference_function(piece, backend_name):
    pytest.importorskip(NEEDS[backend_name])
    backend = BACKENDS[backend_name]("cpu")
    kernel = getattr(importlib.import_module(f"{backend.impl.__name__}.{piece.module}"), piece.name)

    def check(inputs):
        want = piece.reference(**inputs)
        got = piece.call(kernel, backend, inputs)
        if piece.exact:
            np.testing.assert_array_equal(got, want, err_msg=f"{piece.name} ({piece.equation})")
        else:
            np.testing.assert_allclose(got, want, **TOLERANCE["float32"], err_msg=f"{piece.name} ({piece.equation})")

    for found in piece.examples:
        check = example(inputs=found)(check)
    given(inputs=piece.inputs())(check)()


def test_every_kernel_piece_has_the_name_of_a_reference_function():
    names = {p.name for p in TABLE}
    assert names <= set(dir(eq)) | {"harmonize"}, names - set(dir(eq))
