"""A dense-detection-like task small enough to train on a CPU in minutes, and the training loop
used to compare CE, focal loss and GHM-C (and smooth L1 with GHM-R) on it.

Each sample is an "anchor" with a feature vector. About one anchor in a thousand is positive:
positives sit in a few clusters, most negatives are easy (far from every cluster) and some are
hard (close to one). A fraction of the training labels is wrong (outliers: positives labelled
negative and the reverse); the test labels are clean. Positives also carry a 4-d regression
target (a smooth function of the features, plus noise with outliers), like box offsets.
Everything is drawn from one seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FEATURES = 16
CLUSTERS = 6


@dataclass
class Split:
    x: np.ndarray  # (N, FEATURES) float32
    y: np.ndarray  # (N, 1) float32 labels (noisy in training, clean in test)
    box: np.ndarray  # (N, 4) float32 regression targets (meaningful on positives)
    positive: np.ndarray  # (N,) bool: truly positive


def make_task(seed: int, n_train: int = 400_000, n_test: int = 200_000, positive_rate: float = 1e-3,
              hard_rate: float = 0.01, outliers: float = 0.1) -> tuple[Split, Split]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, FEATURES)) * 2.0
    mixing = rng.normal(size=(FEATURES, 4)) / math.sqrt(FEATURES)

    def split(n: int, noisy: bool) -> Split:
        positive = rng.random(n) < positive_rate
        hard = ~positive & (rng.random(n) < hard_rate)
        x = rng.normal(size=(n, FEATURES)) * 1.5  # easy negatives: spread out
        c = centres[rng.integers(0, CLUSTERS, n)]
        x[positive] = c[positive] + rng.normal(size=(positive.sum(), FEATURES)) * 0.5
        x[hard] = c[hard] + rng.normal(size=(hard.sum(), FEATURES)) * 1.2
        y = positive.astype(np.float32)
        box = np.tanh(x @ mixing) + 0.05 * rng.normal(size=(n, 4))
        if noisy:
            flip_pos = positive & (rng.random(n) < outliers)  # missed annotations
            flip_neg = hard & (rng.random(n) < outliers * positive_rate / hard_rate)  # spurious ones
            y[flip_pos | flip_neg] = 1.0 - y[flip_pos | flip_neg]
            wild = positive & (rng.random(n) < outliers)  # badly drawn boxes
            box[wild] += rng.normal(size=(wild.sum(), 4)) * 1.5
        return Split(x.astype(np.float32), y.reshape(-1, 1), box.astype(np.float32), positive)

    return split(n_train, True), split(n_test, False)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as in detection AP)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    if not hits.any():
        return 0.0
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float(np.sum(precision[hits]) / hits.sum())


def focal_loss(logits, target, alpha: float = 0.25, gamma: float = 2.0):
    import torch.nn.functional as F

    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum() / target.sum().clamp(min=1.0)


def classification_losses() -> dict:
    """name -> factory of a loss (logits, target) -> scalar."""
    import torch.nn.functional as F

    from impl_torch import GHMCLoss

    return {
        "CE": lambda: (lambda x, t: F.binary_cross_entropy_with_logits(x, t)),
        "focal (gamma 2, alpha 0.25)": lambda: focal_loss,
        "GHM-C paper": lambda: GHMCLoss(bins=30, momentum=0.75, dialect="paper"),
        "GHM-C mmdet": lambda: GHMCLoss(bins=30, momentum=0.75, dialect="mmdet"),
    }


def regression_losses() -> dict:
    import torch.nn.functional as F

    from impl_torch import GHMRLoss

    return {
        "smooth L1 (beta 1/9)": lambda: (lambda p, t: F.smooth_l1_loss(p, t, beta=1.0 / 9.0)),
        "GHM-R paper": lambda: GHMRLoss(mu=0.02, bins=10, momentum=0.7, dialect="paper"),
        "GHM-R mmdet": lambda: GHMRLoss(mu=0.02, bins=10, momentum=0.7, dialect="mmdet"),
    }


def model(seed: int):
    import torch

    torch.manual_seed(seed)
    body = torch.nn.Sequential(torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                               torch.nn.ReLU())
    cls, reg = torch.nn.Linear(64, 1), torch.nn.Linear(64, 4)
    torch.nn.init.constant_(cls.bias, -math.log(99.0))  # prior probability 0.01, as RetinaNet's head
    return body, cls, reg


def train_classifier(loss_name: str, train: Split, test: Split, seed: int, *, epochs: int = 15,
                     batch: int = 20_000, lr: float = 3e-3) -> dict:
    """One run: the classification head with this loss; AP on the clean test set after every epoch."""
    import torch

    body, head, _ = model(seed)
    loss_fn = classification_losses()[loss_name]()
    opt = torch.optim.Adam(list(body.parameters()) + list(head.parameters()), lr=lr)
    x, y = torch.tensor(train.x), torch.tensor(train.y)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss_fn(head(body(x[idx])), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            scores = head(body(torch.tensor(test.x)))[:, 0].numpy()
        curve.append(average_precision(scores, test.positive))
    return {"ap": curve[-1], "curve": curve}


def train_regressor(loss_name: str, train: Split, test: Split, seed: int, *, epochs: int = 400,
                    lr: float = 3e-3) -> dict:
    """One run: the regression head on the positives; mean absolute error on clean test positives."""
    import torch

    body, _, head = model(seed)
    loss_fn = regression_losses()[loss_name]()
    opt = torch.optim.Adam(list(body.parameters()) + list(head.parameters()), lr=lr)
    x, t = torch.tensor(train.x[train.positive]), torch.tensor(train.box[train.positive])
    curve = []
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn(head(body(x)), t).backward()
        opt.step()
        with torch.no_grad():
            pred = head(body(torch.tensor(test.x[test.positive]))).numpy()
        curve.append(float(np.mean(np.abs(pred - test.box[test.positive]))))
    return {"mae": curve[-1], "curve": curve[::10]}
