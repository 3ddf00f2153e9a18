"""Does GHM work? CE, focal loss, GHM-C and GHM-C + GHM-R trained the way the released GHM
configuration trains RetinaNet, on the detection task of ``benchmarks/detection.py``, with
paired seeds, and GHM's own diagnostics logged through every run.

    python -m benchmarks.comparison                       # the main table (the released setting)
    python -m benchmarks.comparison --ablation all-anchors   # one ablation (each changes one thing)
    python -m benchmarks.comparison --report              # rewrite results.md and the figures from the saved runs
    python -m benchmarks.comparison --quick               # a toy size: the smoke test (CI)

The main table: four pairs of losses (CE + smooth L1, the floor; focal loss + smooth L1, the
baseline; GHM-C + smooth L1; GHM-C + GHM-R), each in the released setting (``detection.Setting``'s
defaults: SGD, warmup, steps at epochs 8 and 11 of 12, clip 35, GHM per FPN level in the mmdet
dialect, GHM-R loss weight 10). Each pair trains seed 0 at the released learning rate (0.01) and
at its neighbour (0.02); the rate with the better validation AP is the pair's, and seeds 1.. repeat
it. Seeds are paired: one seed gives every pair the same initialisation, data order and flips.
Scored at the end of training on the test split. Each ablation reruns some pairs with one change,
at the main run's chosen rates and seeds, and is compared seed by seed with the main run.

Every run, every iteration, measures where the gradient goes (``detection._probe``: the share
of the classification gradient's L1 mass in each region of g, of the box gradient's in each
region of gr, whatever the loss), and the GHM losses report their own diagnostics
(``impl_torch`` ``diagnostics=True``: counts, EMA, non-empty regions, beta, gradient mass);
both are saved per half epoch in the runs' JSON and drawn in ``diagnostics.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import detection as det
from .plotting import pyplot

OUT = Path(__file__).parent.parent / "docs" / "figures"
README = Path(__file__).parent.parent / "README.md"
MAIN_PAIRS = (("CE", "smooth L1"), ("focal loss", "smooth L1"), ("GHM-C", "smooth L1"), ("GHM-C", "GHM-R"))
RATES = (0.01, 0.02)  # the released rate and its neighbour
MARGIN = 0.01  # AP: "no worse than" allows this much (one COCO AP point, above the paper's GHM gains)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Ablation:
    """One change from the released setting, applied to some pairs."""

    pairs: tuple
    change: dict
    what: str


ABLATIONS = {
    "all-anchors": Ablation(
        (("GHM-C", "smooth L1"), ("GHM-C", "GHM-R")),
        {"calling": "all_anchors"},
        "GHM called once over the concatenated levels (keras-hub, torchvision) instead of once per level",
    ),
    "ghmr-weight-1": Ablation(
        (("GHM-C", "GHM-R"),),
        {"ghmr": {"mu": 0.02, "bins": 10, "momentum": 0.7, "loss_weight": 1.0}},
        "GHM-R loss weight 1 instead of the released 10",
    ),
    "mu-0.005": Ablation(
        (("GHM-C", "GHM-R"),),
        {"ghmr": {"mu": 0.005, "bins": 10, "momentum": 0.7, "loss_weight": 10.0}},
        "GHM-R mu 0.005 instead of 0.02",
    ),
    "mu-0.1": Ablation(
        (("GHM-C", "GHM-R"),),
        {"ghmr": {"mu": 0.1, "bins": 10, "momentum": 0.7, "loss_weight": 10.0}},
        "GHM-R mu 0.1 instead of 0.02",
    ),
    "paper-dialect": Ablation(
        (("GHM-C", "smooth L1"), ("GHM-C", "GHM-R")),
        {"dialect": "paper"},
        "the paper's Eqs. (9)-(13) (divide by M, EMA from the first counts) instead of the official code's",
    ),
    "adamw": Ablation(
        MAIN_PAIRS,
        {"optimizer": "adamw", "lr": 0.001},
        "AdamW at 1e-3 (the rate the earlier AdamW protocol chose most often) instead of SGD",
    ),
}


def name_of(pair) -> str:
    return " + ".join(pair)


def interval(diffs) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% t-interval."""
    d = np.asarray(diffs, float)
    if len(d) < 2:
        return float(d.mean()), float("nan"), float("nan")
    half = T975[min(len(d) - 1, 9)] * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def _log(line):
    print(line, file=sys.stderr, flush=True)


_SPLITS: dict = {}
_PROBE: dict = {}


def _init_worker(sizes) -> None:
    """Each process renders the splits once and trains on one thread: a run's numbers are then the
    same whichever process, and however many beside it, trains it."""
    import torch

    torch.set_num_threads(1)
    _SPLITS.update(det.splits(sizes))
    _PROBE["every"] = sizes["probe_every"]


def _train(task) -> dict:
    pair, seed, setting = task
    r = det.train(*pair, _SPLITS, seed=seed, setting=setting, log=_log, diagnostics=True, probe_every=_PROBE["every"])
    r.pop("model")
    return r


def _map(tasks: list, sizes, jobs: int) -> list[dict]:
    """``_train`` over ``tasks`` in ``jobs`` processes (in this one when jobs is 1)."""
    if jobs <= 1:
        _init_worker(sizes)
        return [_train(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(sizes,)
    ) as pool:
        return list(pool.map(_train, tasks))


def run_main(sizes, *, jobs: int = 1, only=None, saved=None, seeds=None) -> list[dict]:
    """Per pair: seed 0 at each rate of RATES, the better by validation AP chosen, seeds 1.. at it."""
    setting = det.Setting(**sizes["setting"])
    seeds = seeds or sizes["seeds"]
    pairs = [p for p in MAIN_PAIRS if not only or name_of(p) in only]
    start = time.time()
    first = _map([(p, 0, replace(setting, lr=lr)) for p in pairs for lr in RATES], sizes, jobs)
    tried = {name_of(p): dict(zip(RATES, first[i * len(RATES) : (i + 1) * len(RATES)])) for i, p in enumerate(pairs)}
    chosen = {name: max(RATES, key=lambda lr: runs[lr]["val_ap"]) for name, runs in tried.items()}
    rest = _map([(p, s, replace(setting, lr=chosen[name_of(p)])) for p in pairs for s in range(1, seeds)], sizes, jobs)
    results = []
    for pair in MAIN_PAIRS:
        name = name_of(pair)
        if name not in tried:
            results.append(saved[name])
            continue
        runs = [tried[name][chosen[name]]] + [
            r for p, r in zip([p for p in pairs for _ in range(1, seeds)], rest) if p == pair
        ]
        results.append(
            {
                "name": name,
                "pair": list(pair),
                "setting": asdict(replace(setting, lr=chosen[name])),
                "rates": {str(lr): tried[name][lr]["val_ap"] for lr in RATES},
                "chosen": chosen[name],
                "other_rate_run": tried[name][next(lr for lr in RATES if lr != chosen[name])],
                "runs": runs,
            }
        )
        _log(f"{name}: lr {chosen[name]:g}, test AP {[round(r['test_ap'], 4) for r in runs]}")
    _log(f"main run: {time.time() - start:.0f} s")
    return results


def extend_seeds(sizes, main: list[dict], seeds: int, *, jobs: int = 1) -> list[dict]:
    """The saved main run with seeds up to ``seeds`` - 1, each pair at its chosen rate (the seeds
    it has are kept)."""
    tasks = [
        (tuple(m["pair"]), s, det.Setting(**{**m["setting"], "steps": tuple(m["setting"]["steps"])}))
        for m in main
        for s in range(len(m["runs"]), seeds)
    ]
    runs = _map(tasks, sizes, jobs)
    out = []
    for m in main:
        mine = [r for (p, _, _), r in zip(tasks, runs) if list(p) == m["pair"]]
        out.append({**m, "runs": m["runs"] + mine})
        _log(f"{m['name']}: test AP {[round(r['test_ap'], 4) for r in out[-1]['runs']]}")
    return out


def ablation_setting(key: str, sizes, chosen_lr: float) -> det.Setting:
    """The released setting at the main run's chosen rate, with the ablation's one change (which
    may be the rate itself: AdamW's)."""
    return replace(det.Setting(**sizes["setting"]), **{"lr": chosen_lr, **ABLATIONS[key].change})


def run_ablations(keys: list[str], sizes, main: list[dict], *, jobs: int = 1) -> dict:
    """Each ablation's pairs with its one change, at each pair's chosen rate, on the main run's
    seeds; the runs of every ablation asked for share one pool of processes."""
    chosen = {m["name"]: m for m in main}
    tasks = []
    for key in keys:
        for pair in ABLATIONS[key].pairs:
            base = chosen[name_of(pair)]
            setting = ablation_setting(key, sizes, base["chosen"])
            tasks += [(key, pair, r0["seed"], setting) for r0 in base["runs"]]
    start = time.time()
    runs = _map([t[1:] for t in tasks], sizes, jobs)
    out = {}
    for key in keys:
        ab = ABLATIONS[key]
        out[key] = {"ablation": key, "what": ab.what, "change": ab.change, "pairs": []}
        for pair in ab.pairs:
            mine = [(t, r) for t, r in zip(tasks, runs) if t[0] == key and t[1] == pair]
            out[key]["pairs"].append(
                {"name": name_of(pair), "setting": asdict(mine[0][0][3]), "runs": [r for _, r in mine]}
            )
            _log(f"{key}, {name_of(pair)}: test AP {[round(r['test_ap'], 4) for _, r in mine]}")
    _log(f"ablations {', '.join(keys)}: {time.time() - start:.0f} s")
    return out


# ---------------------------------------------------------------- what the runs say


def _ap(runs, key="test_ap"):
    return [r[key] for r in runs]


def _fmt(values) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _late(history: list, epochs: int, per: int = 2) -> list:
    """The windows of the last third of training (after the first rate step: the settled model)."""
    return history[-max(1, (epochs * per) // 3) :]


def _probes(history: list, i: int, every: int = 4) -> float:
    """How many probes window i summed (saved as "probes"; runs saved before that probed every 4th
    iteration from 0, windows starting where the previous ended)."""
    if "probes" in history[i]:
        return history[i]["probes"]
    lo, hi = (history[i - 1]["iteration"] if i else 0), history[i]["iteration"]
    return float(len(range(-(-lo // every) * every, hi, every)))


def per_iteration(history: list, key: str) -> list:
    """The probe's ``key`` (a per-region mass) summed over regions, per probed iteration, per window."""
    return [float(np.sum(w[key])) / max(_probes(history, i), 1) for i, w in enumerate(history) if key in w]


def summary(run: dict, epochs: int) -> dict:
    """Diagnostic numbers of one run over its last third of training: the share of the classification
    gradient's L1 mass at g < 0.1 (easy), g >= 0.9 (hard or mislabelled) and held by positives; the
    share of the positives' box coordinates whose gr is in the top region (|d| >> mu); and GHM's own
    non-empty regions and positive fraction where the run has them."""
    late = [w for w in _late(run["history"], epochs) if "g_mass" in w]
    if not late:
        return {}
    cls_l1, box_l1 = per_iteration(run["history"], "g_mass"), per_iteration(run["history"], "gr_mass")
    mass = np.sum([w["g_mass"] for w in late], 0)
    pos = np.sum([w["g_mass_positive"] for w in late], 0)
    grc = np.sum([w["gr_counts"] for w in late], 0)
    grm = np.sum([w["gr_mass"] for w in late], 0)
    total = max(mass.sum(), 1e-30)
    out = {
        "easy share": mass[: det.G_BINS // 10].sum() / total,
        "hard share": mass[-det.G_BINS // 10 :].sum() / total,
        "positive share": pos.sum() / total,
        "top gr coords": grc[-1] / max(grc.sum(), 1),
        "top gr mass": grm[-1] / max(grm.sum(), 1e-30),
        "median |d|": float(np.mean([w["abs_d"][0] for w in late])),
        "cls L1 early": float(np.mean(cls_l1[: max(1, len(cls_l1) // 3)])),
        "cls L1 late": float(np.mean(cls_l1[-len(late) :])),
        "box L1 early": float(np.mean(box_l1[: max(1, len(box_l1) // 3)])),
        "box L1 late": float(np.mean(box_l1[-len(late) :])),
    }
    for which in ("cls", "box"):
        if f"{which}_nonempty" in late[0]:
            out[f"{which} non-empty regions"] = float(np.mean([w[f"{which}_nonempty"] for w in late]))
    if "cls_positive_fraction" in late[0]:
        out["positive fraction"] = float(np.mean([w["cls_positive_fraction"] for w in late]))
    return out


def verdict(diffs, kind: str) -> str:
    _mean, lo, hi = interval(diffs)
    if math.isnan(lo):
        return "one seed: no interval"
    if kind == "better":
        return "reproduced" if lo > 0 else "refuted (worse)" if hi < 0 else "inconclusive"
    # "no worse than": non-inferiority with margin MARGIN
    return "reproduced (no worse)" if lo > -MARGIN else "refuted (worse)" if hi < 0 else "inconclusive"


CLAIMS = (
    ("focal loss + smooth L1", "CE + smooth L1", "better", "focal loss > CE"),
    ("GHM-C + smooth L1", "focal loss + smooth L1", "no worse", "GHM-C >= focal loss"),
    ("GHM-C + GHM-R", "GHM-C + smooth L1", "no worse", "GHM-C + GHM-R >= GHM-C + smooth L1"),
    ("GHM-C + smooth L1", "CE + smooth L1", "better", "GHM-C > CE (the paper: 35.8 vs 28.6)"),
)


def tables(main: list[dict], ablations: list[dict]) -> str:
    by = {m["name"]: m for m in main}
    epochs = main[0]["setting"]["epochs"]
    rows = [
        "| pair | learning rate (seed 0's validation AP at 0.01, 0.02) | test AP per seed | mean | "
        "AP50 per seed | mean |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in main:
        ap, ap50 = _ap(m["runs"]), _ap(m["runs"], "test_ap50")
        rates = ", ".join(
            f"{'**' if float(k) == m['chosen'] else ''}{v:.3f}{'**' if float(k) == m['chosen'] else ''}"
            for k, v in m["rates"].items()
        )
        rows.append(
            f"| {m['name']} | {m['chosen']:g} ({rates}) | {_fmt(ap)} | {np.mean(ap):.3f} | {_fmt(ap50)} | "
            f"{np.mean(ap50):.3f} |"
        )
    out = [
        "### Released setting (SGD 0.01, warmup 500, steps 8/11 of 12 epochs, clip 35, GHM per FPN level, "
        "mmdet dialect, GHM-R weight 10)",
        "",
        *rows,
        "",
        "### The paper's claims, as paired differences (same seed: same initialisation, data order and flips)",
        "",
        "| claim | A - B per seed (test AP) | mean [95% interval] | verdict |",
        "| --- | --- | --- | --- |",
    ]
    out += _claim_rows(by)
    out += [
        "",
        f'"No worse" is non-inferiority with a margin of {MARGIN} AP: reproduced when the whole interval '
        f'lies above -{MARGIN}, refuted when it lies below 0. "Better": reproduced when the interval lies above 0.',
        "",
        "### Where the gradient goes (mean over seeds; the shares over the last third of training)",
        "",
        "The probe (`detection._probe`, every 4th iteration, any loss): the L1 norm of the classification "
        "loss's gradient with respect to the logits per iteration, in the first and the last third of training; "
        "the share of it at g < 0.1 (easy), at g >= 0.9 (hard or mislabelled) and held by the positive entries; "
        "the same for the box loss's gradient (gr with mu 0.02: the share of the positives' coordinates in the top "
        "region, \\|d\\| >> mu, and of the gradient there); and GHM's own diagnostics (non-empty regions, mean "
        "over the calls of the last third).",
        "",
        "| pair | cls gradient L1 early / late | at g < 0.1 | at g >= 0.9 | held by positives | box gradient L1 "
        "early / late | box coords in the top gr region | box gradient there | median \\|d\\| | GHM-C / GHM-R "
        "non-empty regions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in main:
        s = _mean_summary(m["runs"], epochs)
        if not s:
            continue
        opt = lambda k, s=s: f"{s[k]:.1f}" if k in s else "-"  # noqa: E731
        out.append(
            f"| {m['name']} | {s['cls L1 early']:.3g} / {s['cls L1 late']:.3g} | {s['easy share']:.1%} | "
            f"{s['hard share']:.1%} | {s['positive share']:.1%} | {s['box L1 early']:.3g} / {s['box L1 late']:.3g} | "
            f"{s['top gr coords']:.1%} | {s['top gr mass']:.1%} | {s['median |d|']:.3f} | "
            f"{opt('cls non-empty regions')} / {opt('box non-empty regions')} |"
        )
    if ablations:
        out += [
            "",
            "### Ablations: one change from the released setting each, at the main run's rate and seeds",
            "",
            "| ablation | pair | test AP per seed | mean | ablation - released per seed | mean [95% interval] |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for ab in ablations:
            for p in ab["pairs"]:
                base = by.get(p["name"])
                ap = _ap(p["runs"])
                if base is None:
                    continue
                by_seed = {r["seed"]: r["test_ap"] for r in base["runs"]}
                d = [r["test_ap"] - by_seed[r["seed"]] for r in p["runs"]]
                mean, lo, hi = interval(d)
                out.append(
                    f"| {ab['ablation']}: {ab['what']} | {p['name']} | {_fmt(ap)} | {np.mean(ap):.3f} | "
                    f"{', '.join(f'{v:+.3f}' for v in d)} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] |"
                )
        for ab in ablations:
            ab_by = {p["name"]: p for p in ab["pairs"]}
            if all(a in ab_by and b in ab_by for a, b, _, _ in CLAIMS):  # every pair: the claims stand alone
                out += [
                    "",
                    f"The paper's claims under the `{ab['ablation']}` ablation alone ({ab['what']}; paired by seed):",
                    "",
                    "| claim | A - B per seed (test AP) | mean [95% interval] | verdict |",
                    "| --- | --- | --- | --- |",
                    *_claim_rows(ab_by),
                ]
        out += [
            "",
            "Where the gradient goes in each ablation (as above; the released setting's row for comparison):",
            "",
            "| ablation | pair | cls gradient L1 early / late | at g >= 0.9 | box gradient L1 early / late | "
            "box coords in the top gr region | median \\|d\\| |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for ab in ablations:
            for p in ab["pairs"]:
                for label, runs in (
                    ("released", by[p["name"]]["runs"] if p["name"] in by else []),
                    (ab["ablation"], p["runs"]),
                ):
                    s = _mean_summary(runs, epochs)
                    if s:
                        out.append(
                            f"| {label} | {p['name']} | {s['cls L1 early']:.3g} / {s['cls L1 late']:.3g} | "
                            f"{s['hard share']:.1%} | {s['box L1 early']:.3g} / {s['box L1 late']:.3g} | "
                            f"{s['top gr coords']:.1%} | {s['median |d|']:.3f} |"
                        )
    return "\n".join(out)


def _claim_rows(by: dict) -> list[str]:
    """The CLAIMS table's rows for the pairs in ``by`` (name -> pair with runs), paired by seed."""
    rows = []
    for a, b, kind, claim in CLAIMS:
        if a in by and b in by:
            ap_b = {r["seed"]: r["test_ap"] for r in by[b]["runs"]}
            d = [r["test_ap"] - ap_b[r["seed"]] for r in by[a]["runs"] if r["seed"] in ap_b]
            mean, lo, hi = interval(d)
            rows.append(
                f"| {claim} | {', '.join(f'{v:+.3f}' for v in d)} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
                f"{verdict(d, kind)} |"
            )
    return rows


def _mean_summary(runs: list, epochs: int) -> dict:
    s = [summary(r, epochs) for r in runs]
    return {k: float(np.mean([x[k] for x in s if k in x])) for k in s[0]} if s and s[0] else {}


# ---------------------------------------------------------------- figures


def figures(main: list[dict], out: Path) -> list[str]:
    """training.png: validation AP through training, per pair and seed. diagnostics.png: per pair,
    the share of the classification gradient (by region of g) and of the box gradient (by region of
    gr) through training, seed 0, and the summaries of ``summary`` for every seed."""
    plt = pyplot()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, m in zip(colours, main):
        for i, r in enumerate(m["runs"]):
            if r["curve"]:
                e, ap = zip(*r["curve"])
                ax.plot(e, ap, color=colour, alpha=0.8, marker=".", label=m["name"] if i == 0 else None)
    ax.set(
        xlabel="epoch",
        ylabel="validation AP (COCO, IoU 0.5:0.95)",
        title=f"released setting, each pair at its rate, {len(main[0]['runs'])} seeds",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(len(main), 4, figsize=(21, 3.6 * len(main)), squeeze=False)
    for row, m in zip(axes, main):
        h = [w for w in m["runs"][0]["history"] if "g_mass" in w]
        if not h:
            continue
        it = [w["iteration"] for w in h]
        for ax, key, label in ((row[0], "g_mass", "g"), (row[1], "gr_mass", "gr")):
            mass = np.array([w[key] for w in h]).T
            share = mass / np.maximum(mass.sum(0, keepdims=True), 1e-30)
            im = ax.imshow(
                np.log10(np.maximum(share, 1e-4)),
                aspect="auto",
                origin="lower",
                vmin=-4,
                vmax=0,
                extent=(it[0], it[-1], 0, 1),
                cmap="viridis",
            )
            ax.set(
                xlabel="iteration",
                ylabel=label,
                title=f"{m['name']}\n{'classification' if label == 'g' else 'box'} gradient share by {label} (log10)",
            )
            fig.colorbar(im, ax=ax)
        for colour, r in zip(colours, m["runs"]):
            hh = [w for w in r["history"] if "g_mass" in w]
            x = [w["iteration"] for w in hh]
            share = lambda w, sl: np.sum(w["g_mass"][sl]) / max(np.sum(w["g_mass"]), 1e-30)  # noqa: E731
            row[2].plot(
                x,
                [share(w, slice(0, det.G_BINS // 10)) for w in hh],
                color=colour,
                ls="-",
                label="cls mass at g < 0.1" if r["seed"] == 0 else None,
            )
            row[2].plot(
                x,
                [share(w, slice(-det.G_BINS // 10, None)) for w in hh],
                color=colour,
                ls="--",
                label="cls mass at g >= 0.9" if r["seed"] == 0 else None,
            )
            row[2].plot(
                x,
                [np.sum(w["g_mass_positive"]) / max(np.sum(w["g_mass"]), 1e-30) for w in hh],
                color=colour,
                ls=":",
                label="cls mass of positives" if r["seed"] == 0 else None,
            )
            row[2].plot(
                x,
                [w["gr_counts"][-1] / max(np.sum(w["gr_counts"]), 1) for w in hh],
                color=colour,
                ls="-.",
                label="box coords in the top gr region" if r["seed"] == 0 else None,
            )
            x_all = [w["iteration"] for w in r["history"] if "g_mass" in w]
            row[3].plot(
                x_all,
                per_iteration(r["history"], "g_mass"),
                color=colour,
                ls="-",
                label="classification" if r["seed"] == 0 else None,
            )
            row[3].plot(
                x_all,
                per_iteration(r["history"], "gr_mass"),
                color=colour,
                ls="--",
                label="box" if r["seed"] == 0 else None,
            )
        row[2].set(
            xlabel="iteration", ylabel="share", ylim=(0, 1), title=f"{m['name']}\nshares, every seed (a colour each)"
        )
        row[2].legend(fontsize=7)
        row[3].set(
            xlabel="iteration",
            ylabel="L1 of d loss / d outputs",
            yscale="log",
            title=f"{m['name']}\ngradient L1 per iteration",
        )
        row[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "diagnostics.png", dpi=80)
    plt.close(fig)
    return ["training.png", "diagnostics.png"]


# ---------------------------------------------------------------- files


def _load(path: Path, default):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def claims_section(text: str) -> str:
    """The README's short form: the paired claims of the main table, without the other tables."""
    start = text.index("### The paper's claims")
    end = text.find("\n### ", start + 1)
    return text[start:] if end < 0 else text[start:end].rstrip() + "\n"


def write_report(out: Path, main: list[dict], ablations: dict, command: str, *, readme: bool) -> str:
    text = tables(main, [ablations[k] for k in ABLATIONS if k in ablations])
    written = figures(main, out)
    (out / "results.md").write_text(
        "# Does GHM work? The released setting on the detection task of benchmarks/detection.py\n\n"
        f"Generated by `{command}` from `runs.json` and `ablations.json` beside this file; never edited by hand. "
        "The earlier protocol (AdamW, a rate grid, a plateau schedule, GHM called once on a one-level head) "
        "is kept in [adamw_protocol.md](adamw_protocol.md).\n\n"
        + text
        + "\n\n"
        + "".join(f"![{w}]({w})\n\n" for w in written)
    )
    if readme and README.exists():
        readme = README.read_text()
        start, end = "<!-- comparison:start -->", "<!-- comparison:end -->"
        if start in readme and end in readme:
            head, rest = readme.split(start, 1)
            README.write_text(head + start + "\n" + claims_section(text) + "\n" + end + rest.split(end, 1)[1])
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.comparison", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a toy size (the smoke test); writes to --out only")
    ap.add_argument(
        "--ablation",
        action="append",
        metavar="NAME",
        choices=sorted(ABLATIONS) + ["all"],
        help="run this ablation (repeatable; 'all'), against the saved main run",
    )
    ap.add_argument(
        "--only",
        action="append",
        metavar="PAIR",
        help="rerun only this pair of the main table (e.g. 'GHM-C + GHM-R'), the others read from runs.json",
    )
    ap.add_argument("--seeds", type=int, help="seeds per pair (default 3; 2 with --quick)")
    ap.add_argument(
        "--more-seeds",
        action="store_true",
        help="add seeds to the saved main run, up to --seeds, each pair at its chosen rate",
    )
    ap.add_argument(
        "--report",
        action="store_true",
        help="only rewrite results.md, the figures and the README section from the saved runs",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="runs trained at once, one process and one thread each (default: the CPU count)",
    )
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = det.QUICK if args.quick else det.FULL
    names = {name_of(p) for p in MAIN_PAIRS}
    bad = sorted(set(args.only or ()) - names)
    if bad:
        ap.error(f"--only: no pair named {bad}; the pairs: {sorted(names)}")
    main_path, ab_path = out / "runs.json", out / "ablations.json"
    saved = {m["name"]: m for m in _load(main_path, [])}
    ablations = _load(ab_path, {})
    if (args.only or args.ablation or args.report or args.more_seeds) and not saved:
        ap.error(f"needs the runs of a main run in {main_path}")
    command = "python -m benchmarks.comparison" + (" --quick" if args.quick else "")
    if not args.report:
        start = time.time()
        if args.more_seeds:
            if not args.seeds:
                ap.error("--more-seeds needs --seeds")
            results = extend_seeds(sizes, [saved[name_of(p)] for p in MAIN_PAIRS], args.seeds, jobs=args.jobs)
            main_path.write_text(json.dumps(_rounded(results)))
            saved = {m["name"]: m for m in results}
        elif args.ablation:
            keys = list(ABLATIONS) if "all" in args.ablation else args.ablation
            main_runs = [saved[name_of(p)] for p in MAIN_PAIRS]
            ablations.update(_rounded(run_ablations(keys, sizes, main_runs, jobs=args.jobs)))
            ab_path.write_text(json.dumps(ablations))
        else:
            results = run_main(sizes, jobs=args.jobs, only=args.only, saved=saved, seeds=args.seeds)
            main_path.write_text(json.dumps(_rounded(results)))
            saved = {m["name"]: m for m in results}
        _log(f"done in {time.time() - start:.0f} s")
    text = write_report(
        out,
        [saved[name_of(p)] for p in MAIN_PAIRS],
        ablations,
        command,
        readme=not args.quick and out.resolve() == OUT.resolve(),
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
