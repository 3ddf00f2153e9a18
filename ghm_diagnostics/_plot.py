"""The diagnostics over training, drawn (matplotlib, the optional [plot] extra)."""

from __future__ import annotations

from typing import Any

import numpy as np


def plot(record, path=None, *, title: str | None = None):
    """Four panels over the steps of a ``Recorder`` (or its ``arrays()``): each region's share of
    the harmonized gradient and of the plain CE/ASL1 gradient (the paper's Figure 1, right panel,
    per step: a healthy GHM run spreads the first over the occupied regions while the second sits
    on region 0), beta per region (log scale), and the occupied regions with the positive
    fraction. Returns the figure; saves it to ``path`` when given."""
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("ghm_diagnostics.plot needs matplotlib: pip install 'ghm-loss[plot]'") from e
    arrays = record.arrays() if hasattr(record, "arrays") else record
    steps = np.asarray(arrays["step"])
    if steps.size == 0:
        raise ValueError("nothing to plot: the record holds no step")
    bins = arrays["counts"].shape[-1]
    extent = (steps[0] - 0.5, steps[-1] + 0.5, -0.5, bins - 0.5)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, constrained_layout=True)
    panels: list[tuple[Any, np.ndarray, str, str | None]] = [  # (axes, values, title, colour map)
        (axes[0, 0], arrays["grad_share"], "share of the GHM gradient", None),
        (axes[0, 1], arrays["plain_share"], "share of the plain gradient (beta = 1)", None),
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(arrays["beta"] > 0, np.log10(arrays["beta"]), np.nan)
    panels.append((axes[1, 0], beta, "log10 beta (blank: empty region)", "coolwarm"))
    with np.errstate(invalid="ignore"):  # one colour scale for both shares; log10 beta centred on beta = 1
        top = np.nanmax([np.nanmax(arrays["grad_share"], initial=0.0), np.nanmax(arrays["plain_share"], initial=0.0)])
        reach = np.nanmax(np.abs(beta), initial=0.0)
    limits = {None: {"vmin": 0.0, "vmax": top or 1.0}, "coolwarm": {"vmin": -(reach or 1.0), "vmax": reach or 1.0}}
    for ax, values, name, cmap in panels:
        image = ax.imshow(
            np.asarray(values, np.float64).reshape(len(steps), bins).T,
            origin="lower",
            aspect="auto",
            extent=extent,
            interpolation="nearest",
            cmap=cmap or "viridis",
            **limits[cmap],
        )
        ax.set_title(name)
        ax.set_ylabel("region j (g in [j/M, (j+1)/M))")
        fig.colorbar(image, ax=ax)
    ax = axes[1, 1]
    ax.plot(steps, arrays["nonempty"], color="C0", label="non-empty regions")
    ax.set_ylim(0, bins + 0.5)
    ax.set_ylabel("non-empty regions", color="C0")
    fraction = np.asarray(arrays["positive_fraction"], np.float64)
    if np.isfinite(fraction).any():
        twin = ax.twinx()
        twin.plot(steps, fraction, color="C1", label="positive fraction")
        twin.set_ylabel("positive fraction", color="C1")
    ax.set_title("occupied regions" + (" and positives" if np.isfinite(fraction).any() else ""))
    for ax in axes[1]:
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
