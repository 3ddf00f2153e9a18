"""Any framework's diagnostics as NumPy, recorded per step, saved and loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

FIELDS = ("counts", "valid", "nonempty", "density", "beta", "grad_mass", "plain_mass", "positive_fraction")


def _to_numpy(value) -> np.ndarray:
    """A torch tensor (any device), a tf / JAX / Keras value, or a NumPy value, as NumPy, by duck
    typing: no framework is imported here."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # torch, tf eager, Keras variables
        try:
            return np.asarray(value.numpy())
        except (AttributeError, TypeError, ValueError):
            pass
    return np.asarray(value)


def as_numpy(diagnostics) -> dict[str, np.ndarray]:
    """One call's diagnostics as {field: NumPy}: a framework's ``Diagnostics`` NamedTuple, the
    reference's dataclass, or a mapping with the fields of spec.md 13."""
    if isinstance(diagnostics, dict):
        items = dict(diagnostics)
    elif dataclasses.is_dataclass(diagnostics):
        items = {name: getattr(diagnostics, name) for name in FIELDS}
    elif hasattr(diagnostics, "_fields"):
        items = dict(zip(diagnostics._fields, diagnostics))
    else:
        raise TypeError(f"expected a Diagnostics (NamedTuple or dataclass) or a dict, got {type(diagnostics).__name__}")
    missing = [name for name in FIELDS if name not in items]
    if missing:
        raise ValueError(f"diagnostics without the fields {missing} of spec.md 13")
    return {name: _to_numpy(items[name]) for name in FIELDS}


def shares(mass: np.ndarray) -> np.ndarray:
    """mass_j / sum_k mass_k over the last axis (0 where the sum is 0; NaN for a poisoned call)."""
    mass = np.asarray(mass, dtype=np.float64)
    total = mass.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, mass / np.where(total != 0, total, 1.0), 0.0)


class Recorder:
    """Diagnostics per step, as NumPy. ``append`` one call's; ``arrays()`` stacks them (step first),
    with the derived ``grad_share`` and ``plain_share``; ``save`` / ``load`` as ``.npz``; ``plot``.

    Args:
        meta: free-form strings kept with the record (e.g. the loss's settings). Default: None.
    """

    def __init__(self, meta: dict | None = None) -> None:
        self.meta = dict(meta or {})
        self.steps: list[int] = []
        self._rows: list[dict[str, np.ndarray]] = []

    def append(self, diagnostics, step: int | None = None) -> None:
        self._rows.append(as_numpy(diagnostics))
        self.steps.append(len(self.steps) if step is None else int(step))

    def __len__(self) -> int:
        return len(self._rows)

    def arrays(self) -> dict[str, np.ndarray]:
        """{"step": (T,), field: (T, ...), "grad_share", "plain_share"}; empty arrays before any step."""
        if not self._rows:
            return {
                "step": np.zeros(0, np.int64),
                **{name: np.zeros(0) for name in FIELDS},
                "grad_share": np.zeros(0),
                "plain_share": np.zeros(0),
            }
        out = {"step": np.asarray(self.steps, np.int64)}
        out.update({name: np.stack([row[name] for row in self._rows]) for name in FIELDS})
        out["grad_share"], out["plain_share"] = shares(out["grad_mass"]), shares(out["plain_mass"])
        return out

    def save(self, path) -> Path:
        path = Path(path)
        arrays = self.arrays()
        meta = {f"meta_{k}": np.asarray(str(v)) for k, v in self.meta.items()}
        kept = {k: v for k, v in arrays.items() if k not in ("grad_share", "plain_share")}
        # allow_pickle: NumPy's default, named so that no ** entry stands for it
        np.savez_compressed(path, allow_pickle=True, **kept, **meta)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path) -> Recorder:
        with np.load(path) as data:
            rec = cls({k[len("meta_") :]: str(data[k]) for k in data.files if k.startswith("meta_")})
            columns = {name: data[name] for name in FIELDS}
            rec.steps = [int(s) for s in data["step"]]
        rec._rows = [{name: columns[name][t] for name in FIELDS} for t in range(len(rec.steps))]
        return rec

    def plot(self, path=None, *, title: str | None = None):
        """``ghm_diagnostics.plot`` of this record."""
        from ._plot import plot

        return plot(self, path, title=title)
