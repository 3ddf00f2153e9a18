"""ghm_diagnostics: any framework's diagnostics as NumPy per step, saved, loaded and drawn
(spec.md 13). Framework values are read by duck typing: the package imports no framework
(tests/test_imports.py)."""

from typing import NamedTuple

import numpy as np
import pytest

import reference
from ghm_diagnostics import FIELDS, Recorder, as_numpy, plot, shares


def _reference_steps(n: int = 4):
    rng = np.random.default_rng(0)
    state, out = None, []
    for _ in range(n):
        x, t = rng.normal(size=(30, 3)) * 3, (rng.random((30, 3)) < 0.2).astype(float)
        r = reference.ghm_c(x, t, bins=8, momentum=0.5, state=state)
        state = r.state
        out.append(r.diagnostics)
    return out


def test_recorder_stacks_steps_and_derives_the_shares():
    steps = _reference_steps()
    rec = Recorder()
    for k, d in enumerate(steps):
        rec.append(d, step=10 * k)
    a = rec.arrays()
    assert len(rec) == 4 and a["step"].tolist() == [0, 10, 20, 30]
    assert a["counts"].shape == (4, 8) and a["counts"].dtype == np.int64
    for k, d in enumerate(steps):
        np.testing.assert_array_equal(a["beta"][k], d.beta)
        np.testing.assert_allclose(a["grad_share"][k], d.grad_share, rtol=1e-12)
        np.testing.assert_allclose(a["plain_share"][k], d.plain_share, rtol=1e-12)


def test_save_and_load_round_trip(tmp_path):
    rec = Recorder({"loss": "GHMCLoss(bins=8)"})
    for d in _reference_steps(3):
        rec.append(d)
    path = rec.save(tmp_path / "diag.npz")
    again = Recorder.load(path)
    assert again.meta == {"loss": "GHMCLoss(bins=8)"} and again.steps == [0, 1, 2]
    for name, value in rec.arrays().items():
        np.testing.assert_array_equal(again.arrays()[name], value, err_msg=name)


class _Tensor:
    """What a framework's value offers: .numpy() (tf eager, Keras) or .detach().cpu() (torch)."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


class _FrameworkDiagnostics(NamedTuple):
    counts: object
    valid: object
    nonempty: object
    density: object
    beta: object
    grad_mass: object
    plain_mass: object
    positive_fraction: object


def test_as_numpy_takes_namedtuples_dataclasses_and_dicts():
    d = _reference_steps(1)[0]
    wrapped = _FrameworkDiagnostics(*(_Tensor(getattr(d, f)) for f in FIELDS))
    as_dict = {f: getattr(d, f) for f in FIELDS}
    for form in (d, wrapped, as_dict):
        got = as_numpy(form)
        for f in FIELDS:
            np.testing.assert_array_equal(got[f], getattr(d, f), err_msg=f)
    with pytest.raises(ValueError, match="fields"):
        as_numpy({"counts": d.counts})
    with pytest.raises(TypeError, match="Diagnostics"):
        as_numpy([1, 2])


def test_poisoned_and_empty_shares():
    np.testing.assert_array_equal(shares(np.array([[0.0, 0.0], [1.0, 3.0]])), [[0.0, 0.0], [0.25, 0.75]])
    assert np.isnan(shares(np.array([np.nan, 1.0]))).all()


def test_plot_writes_a_figure(tmp_path):
    pytest.importorskip("matplotlib")
    rec = Recorder()
    for d in _reference_steps(5):
        rec.append(d)
    rec.append(reference.ghm_c(np.array([np.nan]), np.array([1.0]), bins=8).diagnostics)  # a poisoned step draws
    fig = rec.plot(tmp_path / "diag.png", title="GHM-C")
    assert (tmp_path / "diag.png").stat().st_size > 10_000 and len(fig.axes) >= 4
    with pytest.raises(ValueError, match="no step"):
        plot(Recorder())
