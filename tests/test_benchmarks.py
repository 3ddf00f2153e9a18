"""The benchmarks time what they say: the official-loop baselines compute the official loss (the
mmdet dialect without momentum), the detector's anchor assignment follows RetinaNet's rule, and
the detection task gives every object a positive anchor among tens of thousands; the A/B
benchmark imports each side from its own checkout and says "regression" when there is one."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import detection, detector


def _batch(seed=0, rows=3000, cols=5):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, cols)) * 3).astype(np.float32)
    t = (rng.random((rows, cols)) < 0.05).astype(np.float32)
    w = np.repeat((rng.random((rows, 1)) < 0.9).astype(np.float32), cols, 1)
    return x, t, w


def test_official_loops_compute_the_mmdet_loss_and_gradient():
    torch = pytest.importorskip("torch")
    from benchmarks.impls import official_loop_c, official_loop_r
    from impl_torch import GHMCLoss, GHMRLoss

    x, t, w = (torch.as_tensor(a) for a in _batch())
    for official, ours, target in (
        (official_loop_c, GHMCLoss(bins=30, momentum=0.0, dialect="mmdet"), t),
        (official_loop_r, GHMRLoss(mu=0.02, bins=10, momentum=0.0, dialect="mmdet"), t * 0.3),
    ):
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        la, lb = official(a, target, w), ours(b, target, w)
        la.backward()
        lb.backward()
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-7, msg=f"{official.__name__}: loss")
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-9, msg=f"{official.__name__}: gradient")


@pytest.mark.parametrize("eager", [True, False], ids=["eager (host syncs)", "graph (selects)"])
def test_keras_official_losses_compute_the_mmdet_loss(eager):
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    import keras

    from impl_keras import GHMCLoss, GHMRLoss

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the detector benchmark's Keras part runs on the TensorFlow backend")
    x, t, w = _batch(1, rows=2000, cols=4)
    x, t, anchor_w = x.reshape(1, 2000, 4), t.reshape(1, 2000, 4), w[:, 0].reshape(1, 2000)
    official_c, official_r = detector.keras_official_losses(eager)
    for official, ours, target in (
        (official_c, GHMCLoss(bins=30, momentum=0.0, dialect="mmdet"), t),
        (official_r, GHMRLoss(mu=0.02, bins=10, momentum=0.0, dialect="mmdet"), t * 0.3),
    ):
        got = float(official(target, x, sample_weight=anchor_w))
        want = float(ours(target, x, sample_weight=anchor_w))
        assert got == pytest.approx(want, rel=1e-5), f"{type(official).__name__} ({'eager' if eager else 'graph'})"


def test_anchor_assignment_follows_retinanet():
    anchors = detector.anchors_for(128)
    boxes = np.array([[10, 10, 60, 50], [70, 80, 120, 126]], np.float32)
    cls_t, cls_w, box_t, box_w = detector.assign(anchors, boxes, np.array([2, 0]), 4)
    best = detector.iou(anchors, boxes).max(1)
    assert np.array_equal(box_w == 1, best >= 0.5), "positives are the anchors with IoU >= 0.5"
    assert np.array_equal(cls_w == 0, (best >= 0.4) & (best < 0.5)), "anchors between the thresholds are ignored"
    assert np.array_equal(cls_t.sum(1), box_w), "a positive anchor has exactly one class"
    assert len(anchors) == 9 * sum(int(np.ceil(128 / 2**lv)) ** 2 for lv in range(3, 8))
    # encode is invertible: decoding the targets of the positives gives their boxes back
    torch = pytest.importorskip("torch")
    pos = box_w == 1
    back = detection.decode(torch.as_tensor(anchors[pos]), torch.as_tensor(box_t[pos])).numpy()
    assert np.allclose(back, boxes[detector.iou(anchors[pos], boxes).argmax(1)], atol=1e-3)


def test_detection_task_matches_every_object_and_is_seeded():
    data = detection.render(8, seed=5)
    again = detection.render(8, seed=5)
    assert np.array_equal(data.images, again.images), "the same seed renders the same images"
    a = detection.anchors()
    assert len(a) == sum(detection.level_sizes()) == 9 * sum((detection.IMAGE // s) ** 2 for s in detection.STRIDES)
    assert len(detection.STRIDES) >= 3, "an FPN of at least three levels"
    for boxes, labels in zip(data.boxes, data.labels):
        assert 1 <= len(boxes) <= 4
        target, weight, _, positive = detection.match(a, boxes, labels)
        hit = detector.iou(a[positive == 1], boxes).argmax(1)
        assert set(hit.tolist()) == set(range(len(boxes))), "every object has a positive anchor"
        assert positive.sum() < 0.02 * len(a), "a few positives among thousands of anchors"
        assert np.array_equal(target.sum(1), positive)
        assert np.all(weight[positive == 1] == 1), "a positive is never ignored"


def test_flipped_split_mirrors_images_and_boxes():
    torch = pytest.importorskip("torch")
    split = detection.prepare(detection.render(4, seed=3))
    flip = detection.flipped(split)
    assert torch.equal(flip.images, split.images.flip(-1))
    for b, fb in zip(split.data.boxes, flip.data.boxes):
        assert np.allclose(fb[:, [0, 2]], detection.IMAGE - b[:, [2, 0]]) and np.allclose(fb[:, [1, 3]], b[:, [1, 3]])
    assert torch.equal(flip.positive.sum(1) > 0, split.positive.sum(1) > 0)


def test_learning_rate_schedule_is_mmdetections_step_policy_with_linear_warmup():
    s = detection.Setting(lr=0.01, warmup=500, warmup_ratio=1 / 3, steps=(8, 11), epochs=12)
    per_epoch = 100
    assert detection.rate_at(s, 0, per_epoch) == pytest.approx(0.01 / 3), "warmup starts at lr * warmup_ratio"
    assert detection.rate_at(s, 250, per_epoch) == pytest.approx(0.01 * (1 - 0.5 * (2 / 3))), "linear in between"
    assert detection.rate_at(s, 500, per_epoch) == pytest.approx(0.01)
    assert detection.rate_at(s, 799, per_epoch) == pytest.approx(0.01), "epoch 8 still at the full rate"
    assert detection.rate_at(s, 800, per_epoch) == pytest.approx(0.001), "x0.1 after epoch 8"
    assert detection.rate_at(s, 1100, per_epoch) == pytest.approx(0.0001), "x0.01 after epoch 11"


def _head_outputs(torch, seed=0, batch=2):
    """Random per-level head outputs and a matched batch of the detection task."""
    split = detection.prepare(detection.render(batch, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    outputs, start = [], 0
    for n in detection.level_sizes():
        outputs.append(
            (
                torch.randn(batch, n, detection.CLASSES, generator=gen, dtype=torch.float64) * 3,
                torch.randn(batch, n, 4, generator=gen, dtype=torch.float64) * 0.3,
            )
        )
        start += n
    b = {k: getattr(split, k).double() for k in ("cls_target", "cls_weight", "box_target", "positive")}
    return outputs, b


def test_losses_per_level_and_over_all_anchors():
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss, GHMRLoss

    outputs, b = _head_outputs(torch)
    # CE, focal loss and smooth L1 are sums over the batch's entries divided by its positives: the
    # calling mode cannot change them
    for cls_name in ("CE", "focal loss"):
        per = detection.Losses(cls_name, "smooth L1", detection.Setting(calling="per_level"))(outputs, b)
        once = detection.Losses(cls_name, "smooth L1", detection.Setting(calling="all_anchors"))(outputs, b)
        for x, y in zip(per, once):
            torch.testing.assert_close(x, y, msg=f"{cls_name}: per level vs all anchors")
    # GHM per level: one module called on each level in turn (one EMA across levels), the levels'
    # own losses summed, as mmdetection's head does; all anchors: one call on the concatenation
    setting = detection.Setting()
    for calling in ("per_level", "all_anchors"):
        losses = detection.Losses("GHM-C", "GHM-R", detection.Setting(calling=calling))
        c = GHMCLoss(**setting.ghmc, dialect=setting.dialect)
        r = GHMRLoss(**setting.ghmr, dialect=setting.dialect)
        for step in range(2):
            got = losses(outputs, b)
            parts = losses._calls(outputs, b)
            assert len(parts) == (len(detection.STRIDES) if calling == "per_level" else 1)
            want_c = sum(
                c(x.reshape(-1, detection.CLASSES), t.reshape(-1, detection.CLASSES), w.reshape(-1))
                for x, t, w, *_ in parts
            )
            want_r = sum(r(x.reshape(-1, 4), t.reshape(-1, 4), p.reshape(-1)) for *_, x, t, p in parts)
            torch.testing.assert_close(got[0], want_c, msg=f"GHM-C {calling}, step {step}")
            torch.testing.assert_close(got[1], want_r, msg=f"GHM-R {calling}, step {step}")
        torch.testing.assert_close(losses.ghmc.ema, c.ema, msg=f"{calling}: the EMA after the same calls")
    per = detection.Losses("GHM-C", "smooth L1", detection.Setting(calling="per_level"))(outputs, b)[0]
    once = detection.Losses("GHM-C", "smooth L1", detection.Setting(calling="all_anchors"))(outputs, b)[0]
    assert abs(float(per) - float(once)) > 1e-3 * float(once), "the calling mode changes GHM-C"
    with pytest.raises(ValueError, match="calling"):
        detection.Losses("GHM-C", "GHM-R", detection.Setting(calling="per_image"))(outputs, b)


def test_paired_differences_and_verdicts():
    from benchmarks import comparison

    mean, lo, hi = comparison.interval([1.0, 2.0, 3.0])
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - 4.303 / 3**0.5, 2.0 + 4.303 / 3**0.5))
    assert comparison.verdict([0.02, 0.03, 0.025], "better") == "reproduced"
    assert comparison.verdict([-0.02, -0.03, -0.025], "better") == "refuted (worse)"
    assert comparison.verdict([-0.02, 0.03, 0.0], "better") == "inconclusive"
    assert comparison.verdict([-0.002, 0.001, 0.0], "no worse") == "reproduced (no worse)"
    assert comparison.verdict([-0.2, -0.3, -0.25], "no worse") == "refuted (worse)"
    assert comparison.verdict([-0.05, 0.03, 0.0], "no worse") == "inconclusive"


def test_main_run_chooses_the_rate_on_seed_0_and_pairs_the_seeds(monkeypatch):
    from benchmarks import comparison

    calls = []

    def fake_train(cls_name, box_name, splits, *, seed, setting, log=None, **kw):
        calls.append((cls_name, seed, setting.lr))
        good = 0.02 if cls_name == "GHM-C" else 0.01
        return {
            "seed": seed,
            "val_ap": 0.5 if setting.lr == good else 0.4,
            "test_ap": 0.3,
            "test_ap50": 0.6,
            "curve": [],
            "history": [],
            "model": None,
        }

    monkeypatch.setattr(detection, "train", fake_train)
    monkeypatch.setattr(detection, "splits", lambda sizes: {})
    sizes = {"setting": {}, "seeds": 3, "probe_every": 4}
    results = comparison.run_main(sizes, jobs=1)
    assert [m["chosen"] for m in results] == [0.01, 0.01, 0.02, 0.02], "the better rate on seed 0's validation AP"
    for m in results:
        assert [r["seed"] for r in m["runs"]] == [0, 1, 2], "seed 0's run at the chosen rate is reused"
        assert set(m["rates"]) == {"0.01", "0.02"}
    assert [c for c in calls if c[1] > 0] == [(m["pair"][0], s, m["chosen"]) for m in results for s in (1, 2)]


@pytest.mark.parametrize(
    "low, high, said",
    [
        (1.01, 1.3, "regression"),
        (0.7, 0.99, "faster"),
        (0.95, 1.05, "same within spread"),
        (1.0, 1.2, "same within spread"),
    ],
)
def test_compare_verdict_needs_the_whole_spread_off_one(low, high, said):
    from benchmarks.compare import verdict

    assert verdict(low, high) == said


def test_compare_spread_is_not_decided_by_one_wild_round():
    from benchmarks.compare import median_interval, verdict

    quotients = [1.2, 1.25, 1.18, 1.22, 1.3, 1.21, 1.19, 1.24, 1.23, 1.2, 1.26, 0.4]  # one round disturbed
    low, high = median_interval(quotients)
    assert (low, high) == (1.19, 1.25), "12 rounds: the 3rd smallest to the 3rd largest"
    assert verdict(low, high) == "regression"
    assert median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0), "too few rounds: the full range"


_SLOWER = """
import time as _time

_forward = GHMCLoss.forward


def _slower(self, *args, **kwargs):  # a regression the A/B benchmark must see
    _time.sleep(0.1)  # large beside what a busy machine does to a 1 ms loss
    return _forward(self, *args, **kwargs)


GHMCLoss.forward = _slower
"""


def test_compare_quick_finds_a_regression_in_the_working_tree(tmp_path):
    """``python -m benchmarks.compare HEAD --quick --rounds 9 --threads 1`` in a scratch repository whose working tree
    slows GHM-C down: side A (HEAD) runs from a temporary worktree, side B from the working tree,
    each importing its own impl_torch; the row says regression; no worktree is left behind."""
    pytest.importorskip("torch")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    here = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    for part in ("impl_torch", "benchmarks"):
        shutil.copytree(
            here / part,
            repo / part,
            ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.json", "results.md", "jax"),
        )
    shutil.copy(here / "ghm_args.py", repo / "ghm_args.py")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], check=True)
    with open(repo / "impl_torch" / "ghm_c.py", "a") as f:
        f.write(_SLOWER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        # Made to hold on a busy machine (in the whole suite, another process's threads run beside
        # it): one thread, because a plain loss on two OpenMP threads waits at its barriers for a
        # descheduled thread (75 ms instead of 1 beside a busy loop), which once turned a 17x
        # slowdown (a 20 ms sleep) into "same within spread"; 9 rounds, not --quick's 3, because
        # from 8 the spread leaves out the wildest round; and a sleep of 100 ms.
        [
            sys.executable,
            "-m",
            "benchmarks.compare",
            "HEAD",
            "--quick",
            "--rounds",
            "9",
            "--threads",
            "1",
            "--fail-on-regression",
        ],
        cwd=repo,
        env=dict(env, PYTHONPATH=str(repo)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, f"--fail-on-regression exits 1 on a regression:\n{proc.stdout}\n{proc.stderr}"
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| torch eager, GHM-C |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    ratio_a, ratio_b, quotient = (float(re.match(r"[\d.]+", c).group()) for c in cells[2:5])
    assert cells[5] == "regression", row
    assert quotient > 1.5 and ratio_b > ratio_a, f"a 100 ms sleep per call is a large regression at 1e5 entries: {row}"
    imported = dict(re.findall(r"^([AB]) imported (\S+)$", proc.stderr, re.M))
    assert Path(imported["B"]) == repo / "impl_torch" / "__init__.py", "B is the working tree"
    assert repo not in Path(imported["A"]).parents, "A is a checkout of its own"
    assert "- B: working tree (" in proc.stdout and "+ uncommitted changes" in proc.stdout
    worktrees = subprocess.run([*git, "worktree", "list"], capture_output=True, text=True, check=True).stdout
    assert len(worktrees.splitlines()) == 1, f"the temporary worktree is removed: {worktrees}"
