"""A dense-detection task rendered from a seeded generator, and a small one-stage detector trained
on it with each classification / box loss (CE, focal loss, GHM-C; smooth L1, GHM-R).

Images (96x96, grey) hold one to four objects of three classes (filled rectangles, filled
ellipses, filled triangles, 8-28 px, any aspect between 1:2 and 2:1) over noise and smooth
clutter, and hard negatives: outlines of the same shapes, which share every edge with an object
but not its fill. The detector is RetinaNet reduced to one level: a stride-2 conv trunk with
batch norm and dilated convs, a classification and a box tower (receptive field about 45 px),
9 anchors per location (3 sizes x 3 aspects), so 20,736 anchors per image against one to four
objects: about 120 positive anchors per image, one classification entry in 500 positive (a COCO
RetinaNet has fewer still, one in tens of thousands, with 80 classes). Anchors are matched as
RetinaNet does (IoU >= 0.5 positive, < 0.4 negative, ignored between, and each object's best
anchor positive). AP is pycocotools' COCO AP (IoU 0.5:0.95) after per-class NMS.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass

import numpy as np

IMAGE = 96
STRIDE = 2
CLASSES = 3
SIZES = (10.0, 16.0, 24.0)
ASPECTS = (0.5, 1.0, 2.0)
NAMES = ("rectangle", "ellipse", "triangle")


# ---------------------------------------------------------------- rendering

def _shape_mask(kind: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx + 0.5) / w, (yy + 0.5) / h
    if kind == 0:
        return np.ones((h, w), bool)
    if kind == 1:
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    return v >= np.abs(u - 0.5) * 2  # apex up


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


@dataclass
class Dataset:
    images: np.ndarray  # (n, 1, IMAGE, IMAGE) float32
    boxes: list  # per image (k, 4) float32, x1 y1 x2 y2
    labels: list  # per image (k,) int64


def render(n: int, seed: int) -> Dataset:
    """n images with their boxes and labels, all drawn from ``seed``."""
    from .common import iou

    rng = np.random.default_rng(seed)
    images = np.empty((n, 1, IMAGE, IMAGE), np.float32)
    all_boxes, all_labels = [], []
    coarse = IMAGE // 8
    for i in range(n):
        img = np.kron(rng.normal(size=(coarse, coarse)) * 0.25, np.ones((8, 8))) + rng.normal(size=(IMAGE, IMAGE)) * 0.15
        placed, boxes, labels = [], [], []
        for distractor in [False] * int(rng.integers(1, 5)) + [True] * int(rng.integers(1, 4)):
            for _ in range(20):  # objects and outlines do not overlap much
                side = rng.uniform(8, 28)
                aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
                w = int(round(min(max(side * math.sqrt(aspect), 6), 30)))
                h = int(round(min(max(side / math.sqrt(aspect), 6), 30)))
                x, y = int(rng.integers(0, IMAGE - w)), int(rng.integers(0, IMAGE - h))
                box = np.array([x, y, x + w, y + h], np.float32)
                if not placed or iou(box[None], np.array(placed)).max() < 0.1:
                    break
            placed.append(box)
            kind = int(rng.integers(0, CLASSES))
            mask = _shape_mask(kind, h, w)
            if distractor:
                mask = _outline(mask)
            else:
                boxes.append(box)
                labels.append(kind)
            img[y:y + h, x:x + w][mask] += rng.uniform(0.6, 1.0) * rng.choice([-1.0, 1.0])
        images[i, 0] = img
        all_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
        all_labels.append(np.array(labels, np.int64))
    return Dataset(images, all_boxes, all_labels)


# ---------------------------------------------------------------- anchors, matching, decoding

def anchors() -> np.ndarray:
    """(cells * cells * 9, 4) anchors x1 y1 x2 y2, row-major, the 9 shapes of a location together."""
    cells = IMAGE // STRIDE
    centres = (np.arange(cells) + 0.5) * STRIDE
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    wh = np.array([(s * math.sqrt(a), s / math.sqrt(a)) for s in SIZES for a in ASPECTS])
    c = np.stack([cx.ravel(), cy.ravel()], -1)[:, None, :]
    return np.concatenate([c - wh / 2, c + wh / 2], -1).reshape(-1, 4).astype(np.float32)


def match(anchor_boxes: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """RetinaNet's assignment with low-quality matches (``detector.assign``): class target (A, C),
    classification weight (A,), box offsets (A, 4), positive mask (A,)."""
    from .common import assign

    return assign(anchor_boxes, boxes, labels, CLASSES, low_quality=True)


def decode(anchor_boxes, offsets):
    """Inverse of ``detector.encode`` (torch tensors), widths clamped as torchvision does."""
    import torch

    wa, ha = anchor_boxes[:, 2] - anchor_boxes[:, 0], anchor_boxes[:, 3] - anchor_boxes[:, 1]
    xa, ya = anchor_boxes[:, 0] + wa / 2, anchor_boxes[:, 1] + ha / 2
    dx, dy, dw, dh = offsets.unbind(-1)
    limit = math.log(1000.0 / 16)
    w, h = wa * torch.exp(dw.clamp(max=limit)), ha * torch.exp(dh.clamp(max=limit))
    x, y = xa + dx * wa, ya + dy * ha
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)


def nms(boxes, scores, threshold: float = 0.5):
    """Greedy non-maximum suppression (torch); the kept indices, highest score first."""
    import torch

    order = scores.argsort(descending=True)
    boxes = boxes[order]
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    overlap = inter / (area[:, None] + area[None, :] - inter)
    keep = torch.ones(len(boxes), dtype=torch.bool)
    for i in range(len(boxes)):
        if keep[i]:
            keep[i + 1:] &= overlap[i, i + 1:] <= threshold
    return order[keep]


# ---------------------------------------------------------------- the detector

def detector(seed: int, width: int = 24):
    """RetinaNet on one level: trunk (stride 2, dilations 1-2-4), classification and box towers;
    the classification bias starts at the prior 0.01."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    k = len(SIZES) * len(ASPECTS)

    def conv(a, b, stride=1, dilation=1, norm=False):
        layers = [nn.Conv2d(a, b, 3, stride, dilation, dilation, bias=not norm)]
        return nn.Sequential(*layers, *([nn.BatchNorm2d(b)] if norm else []), nn.ReLU())

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(conv(1, 16, norm=True), conv(16, width, 2, norm=True),
                                       conv(width, width, 1, 2, norm=True), conv(width, width, 1, 4, norm=True),
                                       conv(width, width, 1, 2, norm=True))
            self.cls = nn.Sequential(conv(width, width), nn.Conv2d(width, k * CLASSES, 3, 1, 1))
            self.box = nn.Sequential(conv(width, width), nn.Conv2d(width, k * 4, 3, 1, 1))
            nn.init.constant_(self.cls[-1].bias, -math.log(99.0))
            nn.init.zeros_(self.box[-1].bias)
            for m in (self.cls[-1], self.box[-1]):
                nn.init.normal_(m.weight, std=0.01)

        def forward(self, x):
            f = self.trunk(x)
            n = x.shape[0]
            return (self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, CLASSES),
                    self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4))

    return Net()


# ---------------------------------------------------------------- losses

def focal_loss(cls, target, weight, norm, gamma: float = 2.0, alpha: float = 0.25):
    """RetinaNet's sigmoid focal loss over the entries of non-ignored anchors (``weight`` (B, A)),
    summed and divided by ``norm`` (the number of positive anchors)."""
    import torch.nn.functional as F

    p = cls.sigmoid()
    ce = F.binary_cross_entropy_with_logits(cls, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * ce * weight[..., None]).sum() / norm


def classification_losses() -> dict:
    """name -> factory of loss(cls (B, A, C), target, weight (B, A), norm) -> scalar. CE and focal
    loss are summed over the non-ignored anchors and divided by the number of positive anchors
    (RetinaNet's normalization); GHM-C is its own (spec.md 2)."""
    import torch.nn.functional as F

    from impl_torch import GHMCLoss

    def ce():
        return lambda x, t, w, norm: (F.binary_cross_entropy_with_logits(x, t, reduction="none")
                                      * w[..., None]).sum() / norm

    def ghm(dialect):
        def make():
            loss = GHMCLoss(bins=30, momentum=0.75, dialect=dialect)
            return lambda x, t, w, norm: loss(x.reshape(-1, CLASSES), t.reshape(-1, CLASSES),
                                              w.reshape(-1, 1).expand(-1, CLASSES))
        return make

    return {"CE": ce, "focal loss": lambda: focal_loss, "GHM-C paper": ghm("paper"), "GHM-C mmdet": ghm("mmdet")}


def box_losses() -> dict:
    """name -> factory of loss(offsets (B, A, 4), target, positive (B, A), norm) -> scalar. Smooth
    L1 is summed per positive anchor and divided by their number (RetinaNet's); GHM-R is a mean
    over the positives' coordinates (so about a quarter of smooth L1's box gradient here)."""
    import torch.nn.functional as F

    from impl_torch import GHMRLoss

    def smooth_l1():
        return lambda x, t, pos, norm: (F.smooth_l1_loss(x, t, beta=1 / 9, reduction="none")
                                        * pos[..., None]).sum() / norm

    def ghm(dialect):
        def make():
            # loss_weight 1 (the released configs use 10): the committed results' setting, README
            loss = GHMRLoss(mu=0.02, bins=10, momentum=0.7, dialect=dialect)
            return lambda x, t, pos, norm: loss(x.reshape(-1, 4), t.reshape(-1, 4), pos.reshape(-1, 1).expand(-1, 4))
        return make

    return {"smooth L1": smooth_l1, "GHM-R paper": ghm("paper"), "GHM-R mmdet": ghm("mmdet")}


# ---------------------------------------------------------------- training and evaluation

@dataclass
class Prepared:
    images: object  # torch (n, 1, H, W)
    cls_target: object  # (n, A, C)
    cls_weight: object  # (n, A)
    box_target: object  # (n, A, 4)
    positive: object  # (n, A)
    data: Dataset


def prepare(data: Dataset) -> Prepared:
    import torch

    a = anchors()
    parts = [match(a, b, l) for b, l in zip(data.boxes, data.labels)]
    t, w, bt, pos = (torch.as_tensor(np.stack(p)) for p in zip(*parts))
    return Prepared(torch.as_tensor(data.images), t, w, bt, pos, data)


def coco_ap(model, split: Prepared, *, batch: int = 64, candidates: int = 300, keep: int = 100) -> tuple[float, float]:
    """(AP at IoU 0.5:0.95, AP50) by pycocotools on ``split``: per image the ``candidates``
    highest-scoring (anchor, class) pairs above 0.05, per-class NMS at IoU 0.5, ``keep`` kept."""
    import torch
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    a = torch.as_tensor(anchors())
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": n} for c, n in enumerate(NAMES)]}
    dets = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.images), batch):
            cls, box = model(split.images[start:start + batch])
            scores = cls.sigmoid()
            for j in range(len(cls)):
                image_id = start + j + 1
                flat = scores[j].reshape(-1)
                top = flat.topk(candidates)
                ok = top.values > 0.05
                idx, sc = top.indices[ok], top.values[ok]
                anchor, label = idx // CLASSES, idx % CLASSES
                boxes = decode(a[anchor], box[j][anchor]).clamp(0, IMAGE)
                kept = []
                for c in range(CLASSES):
                    sel = torch.nonzero(label == c)[:, 0]
                    if len(sel):
                        kept.append(sel[nms(boxes[sel], sc[sel])])
                kept = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
                kept = kept[sc[kept].argsort(descending=True)][:keep]
                for k in kept.tolist():
                    x1, y1, x2, y2 = boxes[k].tolist()
                    dets.append({"image_id": image_id, "category_id": int(label[k]) + 1,
                                 "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(sc[k])})
    model.train()
    for i, (boxes, labels) in enumerate(zip(split.data.boxes, split.data.labels)):
        gt["images"].append({"id": i + 1, "width": IMAGE, "height": IMAGE})
        for b, lab in zip(boxes.tolist(), labels.tolist()):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": lab + 1,
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                      "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0})
    if not dets:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = gt
        truth.createIndex()
        ev = COCOeval(truth, truth.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def train(cls_name: str, box_name: str, train_split: Prepared, val: Prepared, test: Prepared | None, *, seed: int,
          lr: float, max_epochs: int = 30, patience: int = 2, batch: int = 16, log=None) -> dict:
    """AdamW (weight decay 1e-4; the gradient norm clipped at 10, as mmdetection's RetinaNet
    does). When the validation AP has not improved for ``patience`` epochs the learning rate
    drops tenfold (RetinaNet's step schedule, placed by the validation AP); at the next such
    plateau, or after ``max_epochs``, training stops. The result is the test AP of the best
    validation epoch. A run whose loss turns non-finite stops there."""
    import torch

    model = detector(seed)
    cls_loss, box_loss = classification_losses()[cls_name](), box_losses()[box_name]()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    n = len(train_split.images)
    best = {"val_ap": -1.0, "epoch": 0, "test_ap": float("nan"), "test_ap50": float("nan")}
    curve = []
    dropped = 0  # the epoch after which the learning rate dropped (0: not yet)
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(n, generator=gen)
        finite = True
        for start in range(0, n - batch + 1, batch):
            idx = order[start:start + batch]
            cls, box = model(train_split.images[idx])
            pos = train_split.positive[idx]
            norm = pos.sum().clamp(min=1.0)
            loss = (cls_loss(cls, train_split.cls_target[idx], train_split.cls_weight[idx], norm)
                    + box_loss(box, train_split.box_target[idx], pos, norm))
            if not torch.isfinite(loss):
                finite = False
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
        val_ap = coco_ap(model, val)[0] if finite else 0.0
        curve.append(val_ap)
        if log:
            log(f"  {cls_name} + {box_name} lr {lr:g} seed {seed} epoch {epoch}: val AP {val_ap:.4f}")
        if val_ap > best["val_ap"]:
            best.update(val_ap=val_ap, epoch=epoch)
            if test is not None:
                best["test_ap"], best["test_ap50"] = coco_ap(model, test)
        if not finite:
            break
        if epoch - max(best["epoch"], dropped) >= patience:
            if dropped:
                break
            dropped = epoch
            for group in opt.param_groups:
                group["lr"] = lr / 10
    best["curve"], best["dropped"] = curve, dropped
    best["model"] = model
    return best


# ---------------------------------------------------------------- the comparison's protocol

CONFIGS = (("CE", "smooth L1"), ("focal loss", "smooth L1"), ("GHM-C paper", "smooth L1"),
           ("GHM-C mmdet", "smooth L1"), ("GHM-C paper", "GHM-R paper"), ("GHM-C mmdet", "GHM-R mmdet"))
GRID = (-6, -5, -4)  # learning rates 10^(k/2): 1e-3, 3.2e-3, 1e-2


def rate(k: int) -> float:
    return 10.0 ** (k / 2)


@dataclass
class Outcome:
    config: tuple[str, str]
    grid: dict  # k -> validation AP of seed 0 (the learning-rate search)
    chosen: int  # k of the chosen rate
    at_edge: bool  # the best rate still at the grid's edge after extending it
    runs: list  # per seed: train()'s result at the chosen rate (without the model)


def search_and_repeat(config: tuple[str, str], tr: Prepared, va: Prepared, te: Prepared, *, seeds: int = 3,
                      grid=GRID, extend: int = 2, log=None, **kw) -> tuple[Outcome, object]:
    """The learning rate by validation AP on seed 0 over ``grid``; while the best is at an edge
    of the grid (of three or more rates), the grid grows by one rate on that side (up to
    ``extend`` times). Then seeds 1.. at the chosen rate; seed 0's run is reused. Returns the
    outcome and seed 0's model at the chosen rate."""
    found = {k: train(*config, tr, va, te, seed=0, lr=rate(k), log=log, **kw) for k in grid}
    for _ in range(extend if len(grid) >= 3 else 0):
        best = max(found, key=lambda k: found[k]["val_ap"])
        if min(found) < best < max(found):
            break
        k = best - 1 if best == min(found) else best + 1
        found[k] = train(*config, tr, va, te, seed=0, lr=rate(k), log=log, **kw)
    best = max(found, key=lambda k: found[k]["val_ap"])
    at_edge = len(found) >= 3 and best in (min(found), max(found))
    runs = [found[best]] + [train(*config, tr, va, te, seed=s, lr=rate(best), log=log, **kw) for s in range(1, seeds)]
    model = runs[0]["model"]
    runs = [{k: v for k, v in r.items() if k != "model"} for r in runs]
    return Outcome(config, {k: v["val_ap"] for k, v in sorted(found.items())}, best, at_edge, runs), model
