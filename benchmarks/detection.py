"""A dense-detection task rendered from a seeded generator, a small RetinaNet (three FPN levels)
trained on it the way the released GHM configuration trains RetinaNet, and its COCO AP.

Images (96x96, grey) hold one to four objects of three classes (filled rectangles, filled
ellipses, filled triangles, 8-44 px, any aspect between 1:2 and 2:1) over noise and smooth
clutter, and hard negatives: outlines of the same shapes, which share every edge with an object
but not its fill. The detector is RetinaNet made small: a four-stage conv backbone with batch
norm, an FPN with three levels (strides 4, 8, 16), and classification and box towers (two convs
each) shared across the levels; 9 anchors per location (RetinaNet's three octave scales x three
aspects, base size 2 x stride), so 6,804 anchors per image against one to four objects. Anchors
are matched as mmdetection's RetinaNet does (``MaxIoUAssigner``: IoU >= 0.5 positive, < 0.4
negative, ignored between, and each object's best anchors positive, ``min_pos_iou=0``).
Box targets are RetinaNet's deltas with stds 1 (the released config's ``target_stds``).

The released setting (mmdetection ``configs/ghm/retinanet_ghm_r50_fpn_1x.py``, the same file
as libuyu/GHM_Detection ``experiments/cfg_retinanet_ghm_r50_fpn_1x.py``): SGD, lr 0.01, momentum
0.9, weight decay 1e-4; the gradient norm clipped at 35; a linear warmup over 500 iterations from
lr/3; the learning rate x0.1 after epochs 8 and 11 of 12; 16 images per batch (2 x 8 GPUs); one
horizontal flip in two; GHMC(bins 30, momentum 0.75, loss_weight 1) and GHMR(mu 0.02, bins 10,
momentum 0.7, loss_weight 10); the head computes its losses once per FPN level (mmdetection's
``AnchorHead.loss`` maps ``loss_single`` over the levels and sums), so one GHM module, and its
EMA, sees the levels in turn. The baseline (``retinanet_r50_fpn_1x``): sigmoid focal loss
(gamma 2, alpha 0.25) and smooth L1 (beta 1/9), each summed and divided by the number of positive
anchors of the batch. AP is pycocotools' COCO AP (IoU 0.5:0.95) after per-class NMS (IoU 0.5,
score above 0.05, 100 detections per image), scored once, at the end of training.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

IMAGE = 96
CLASSES = 3
STRIDES = (4, 8, 16)
BASE = 2.0  # anchor size = BASE * stride * octave scale (RetinaNet: 4; objects here are 8-44 px)
SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
ASPECTS = (0.5, 1.0, 2.0)
NAMES = ("rectangle", "ellipse", "triangle")
SIZE = (8.0, 44.0)  # object sides (before the aspect), drawn log-uniformly


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
        img = (
            np.kron(rng.normal(size=(coarse, coarse)) * 0.25, np.ones((8, 8))) + rng.normal(size=(IMAGE, IMAGE)) * 0.15
        )
        placed, boxes, labels = [], [], []
        for distractor in [False] * int(rng.integers(1, 5)) + [True] * int(rng.integers(1, 4)):
            for _ in range(20):  # objects and outlines do not overlap much
                side = math.exp(rng.uniform(math.log(SIZE[0]), math.log(SIZE[1])))
                aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
                w = round(min(max(side * math.sqrt(aspect), 6), 56))
                h = round(min(max(side / math.sqrt(aspect), 6), 56))
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
            img[y : y + h, x : x + w][mask] += rng.uniform(0.6, 1.0) * rng.choice([-1.0, 1.0])
        images[i, 0] = img
        all_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
        all_labels.append(np.array(labels, np.int64))
    return Dataset(images, all_boxes, all_labels)


# ---------------------------------------------------------------- anchors, matching, decoding


def level_sizes() -> list[int]:
    """Anchors per image on each FPN level (9 per location)."""
    return [math.ceil(IMAGE / s) ** 2 * len(SCALES) * len(ASPECTS) for s in STRIDES]


def anchors() -> np.ndarray:
    """(sum of level_sizes(), 4) anchors x1 y1 x2 y2, level by level, row-major, the 9 shapes of a
    location together (RetinaNet's layout)."""
    from .common import anchors_for

    return np.concatenate(
        [anchors_for(IMAGE, levels=[int(math.log2(s))], scales=SCALES, ratios=ASPECTS, size=BASE) for s in STRIDES]
    )


def match(anchor_boxes: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """mmdetection's MaxIoUAssigner with ``min_pos_iou=0`` (``common.assign``, low-quality
    matches): class target (A, C), classification weight (A,), box deltas (A, 4), positive (A,)."""
    from .common import assign

    return assign(anchor_boxes, boxes, labels, CLASSES, low_quality=True)


def decode(anchor_boxes, offsets):
    """Inverse of ``detector.encode`` (torch tensors), widths clamped as mmdetection does."""
    import torch

    wa, ha = anchor_boxes[:, 2] - anchor_boxes[:, 0], anchor_boxes[:, 3] - anchor_boxes[:, 1]
    xa, ya = anchor_boxes[:, 0] + wa / 2, anchor_boxes[:, 1] + ha / 2
    dx, dy, dw, dh = offsets.unbind(-1)
    limit = abs(math.log(16 / 1000.0))
    w, h = wa * torch.exp(dw.clamp(-limit, limit)), ha * torch.exp(dh.clamp(-limit, limit))
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
            keep[i + 1 :] &= overlap[i, i + 1 :] <= threshold
    return order[keep]


# ---------------------------------------------------------------- the detector


def detector(seed: int, width: int = 32):
    """RetinaNet, small: a backbone of four stride-2 stages (batch norm, two convs each; C2-C4 at
    strides 4, 8, 16), an FPN (1x1 laterals, nearest top-down, a 3x3 output conv per level) and
    classification and box towers (two 3x3 convs and a predictor) shared across the levels. Heads
    initialised as RetinaNet's: normal(0, 0.01) weights, the classification bias at the prior
    0.01. ``forward`` returns per level (cls (B, A_l, C), box (B, A_l, 4))."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    k = len(SCALES) * len(ASPECTS)

    def conv(a, b, stride=1):
        return nn.Sequential(nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())

    def tower(out):
        return nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(width, out, 3, 1, 1),
        )

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (1, 16, 32, 48, 64)
            self.stages = nn.ModuleList(nn.Sequential(conv(a, b, 2), conv(b, b)) for a, b in itertools.pairwise(chans))
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chans[2:])
            self.output = nn.ModuleList(nn.Conv2d(width, width, 3, 1, 1) for _ in chans[2:])
            self.cls, self.box = tower(k * CLASSES), tower(k * 4)
            for head in (self.cls, self.box):
                for m in head:
                    if isinstance(m, nn.Conv2d):
                        nn.init.normal_(m.weight, std=0.01)
                        nn.init.zeros_(m.bias)
            nn.init.constant_(self.cls[-1].bias, -math.log(99.0))

        def forward(self, x):
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            c = feats[1:]  # strides 4, 8, 16
            p = [None] * len(c)
            p[-1] = self.lateral[-1](c[-1])
            for i in range(len(c) - 2, -1, -1):
                p[i] = self.lateral[i](c[i]) + nn.functional.interpolate(p[i + 1], size=c[i].shape[-2:], mode="nearest")
            n = x.shape[0]
            out = []
            for level, conv_out in zip(p, self.output):
                f = conv_out(level)
                out.append(
                    (
                        self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, CLASSES),
                        self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4),
                    )
                )
            return out

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


@dataclass(frozen=True)
class Setting:
    """One training protocol. The defaults are the released setting (module docstring); each
    ablation changes one field."""

    optimizer: str = "sgd"  # "sgd" (released) or "adamw"
    lr: float = 0.01
    epochs: int = 12
    steps: tuple = (8, 11)  # epochs after which the rate drops tenfold
    warmup: int = 500  # iterations of linear warmup from lr * warmup_ratio
    warmup_ratio: float = 1 / 3
    clip: float = 35.0
    batch: int = 16
    flip: bool = True
    calling: str = "per_level"  # GHM losses called once per FPN level, or once over "all_anchors"
    dialect: str = "mmdet"  # the official code's (GHM_Detection, mmdetection)
    ghmc: dict = field(default_factory=lambda: {"bins": 30, "momentum": 0.75, "loss_weight": 1.0})
    ghmr: dict = field(default_factory=lambda: {"mu": 0.02, "bins": 10, "momentum": 0.7, "loss_weight": 10.0})

    def __hash__(self):
        return hash(repr(self))


CLS_LOSSES = ("CE", "focal loss", "GHM-C")
BOX_LOSSES = ("smooth L1", "GHM-R")


class Losses:
    """A pair of losses as the head calls them: ``__call__(outputs, batch)`` -> (cls loss, box loss)
    over the FPN levels. CE, focal loss and smooth L1 are summed over the levels' entries and
    divided by the batch's positive anchors (mmdetection's ``avg_factor=num_total_pos``): per level
    or over all anchors is the same number. GHM-C and GHM-R normalise by their own N: called per
    level (``per_level``: one module, one EMA, each level's loss its own mean, the levels' losses
    summed, as mmdetection's head does) or once over the concatenated levels (``all_anchors``, as
    keras-hub and torchvision call a loss). ``diagnostics`` collects GHM's per-call diagnostics
    (``impl_torch``'s) summed over the calls of one step."""

    def __init__(self, cls_name: str, box_name: str, setting: Setting, *, diagnostics: bool = False):
        from impl_torch import GHMCLoss, GHMRLoss

        self.cls_name, self.box_name, self.setting = cls_name, box_name, setting
        self.diagnostics = diagnostics
        kw = {"dialect": setting.dialect}
        self.ghmc = (
            GHMCLoss(**setting.ghmc, **kw, **({"diagnostics": True} if diagnostics else {}))
            if cls_name == "GHM-C"
            else None
        )
        self.ghmr = (
            GHMRLoss(**setting.ghmr, **kw, **({"diagnostics": True} if diagnostics else {}))
            if box_name == "GHM-R"
            else None
        )
        self.record: dict = {}

    def _calls(self, outputs, batch):
        """(cls, cls target, cls weight, box, box target, positive) per call: one per level, or one."""
        import torch

        parts = []
        start = 0
        for cls, box in outputs:
            end = start + cls.shape[1]
            parts.append(
                (
                    cls,
                    batch["cls_target"][:, start:end],
                    batch["cls_weight"][:, start:end],
                    box,
                    batch["box_target"][:, start:end],
                    batch["positive"][:, start:end],
                )
            )
            start = end
        if self.setting.calling == "all_anchors":
            parts = [tuple(torch.cat(x, 1) for x in zip(*parts))]
        elif self.setting.calling != "per_level":
            raise ValueError(f"calling must be 'per_level' or 'all_anchors', got {self.setting.calling!r}")
        return parts

    def __call__(self, outputs, batch):
        import torch.nn.functional as F

        norm = batch["positive"].sum().clamp(min=1.0)
        cls_total, box_total = 0.0, 0.0
        for cls, t, w, box, bt, pos in self._calls(outputs, batch):
            if self.cls_name == "CE":
                cls_total = (
                    cls_total
                    + (F.binary_cross_entropy_with_logits(cls, t, reduction="none") * w[..., None]).sum() / norm
                )
            elif self.cls_name == "focal loss":
                cls_total = cls_total + focal_loss(cls, t, w, norm)
            else:
                cls_total = cls_total + self.ghmc(cls.reshape(-1, CLASSES), t.reshape(-1, CLASSES), w.reshape(-1))
                self._collect("cls", self.ghmc)
            if self.box_name == "smooth L1":
                box_total = (
                    box_total + (F.smooth_l1_loss(box, bt, beta=1 / 9, reduction="none") * pos[..., None]).sum() / norm
                )
            else:
                box_total = box_total + self.ghmr(box.reshape(-1, 4), bt.reshape(-1, 4), pos.reshape(-1))
                self._collect("box", self.ghmr)
        return cls_total, box_total

    def _collect(self, which: str, module) -> None:
        """Add one call's diagnostics to this step's: counts and masses summed over the calls (the
        levels), non-empty regions and positive fraction averaged, beta and density the last call's."""
        if not self.diagnostics:
            return
        d = module.last_diagnostics()
        calls = self.record.setdefault(which, {})
        for name in ("counts", "grad_mass", "plain_mass", "nonempty", "positive_fraction", "beta", "density"):
            calls.setdefault(name, []).append(getattr(d, name).double())

    def take_record(self) -> dict:
        """This step's diagnostics (``_reduce``d over its calls), and reset."""
        out = {
            which: {name: _reduce(name, values) for name, values in calls.items()}
            for which, calls in self.record.items()
        }
        self.record = {}
        return out


# ---------------------------------------------------------------- data, training and evaluation


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
    parts = [match(a, b, labels) for b, labels in zip(data.boxes, data.labels)]
    t, w, bt, pos = (torch.as_tensor(np.stack(p)) for p in zip(*parts))
    return Prepared(torch.as_tensor(data.images), t, w, bt, pos, data)


# images per split and the seed that renders it; seeds per pair; changes to the released setting
# (and how often the gradient probe runs)
FULL = {"splits": {"train": (3072, 0), "val": (256, 1), "test": (512, 2)}, "seeds": 3, "setting": {}, "probe_every": 4}
QUICK = {
    "splits": {"train": (16, 0), "val": (4, 1), "test": (4, 2)},
    "seeds": 2,
    "setting": {"epochs": 2, "steps": (1,), "warmup": 2, "batch": 8},
    "probe_every": 1,
}


def splits(sizes: dict) -> dict:
    """The rendered, matched splits of ``sizes`` (FULL or QUICK), and the training split flipped."""
    out = {name: prepare(render(n, seed)) for name, (n, seed) in sizes["splits"].items()}
    out["train_flipped"] = flipped(out["train"])
    return out


def flipped(split: Prepared) -> Prepared:
    """The split mirrored left-right, matched anew (a flip moves objects relative to the anchor grid)."""
    boxes = [
        np.stack([IMAGE - b[:, 2], b[:, 1], IMAGE - b[:, 0], b[:, 3]], 1) if len(b) else b for b in split.data.boxes
    ]
    return prepare(Dataset(np.ascontiguousarray(split.data.images[..., ::-1]), boxes, split.data.labels))


def coco_ap(model, split: Prepared, *, batch: int = 64, candidates: int = 300, keep: int = 100) -> tuple[float, float]:
    """(AP at IoU 0.5:0.95, AP50) by pycocotools on ``split``: per image the ``candidates``
    highest-scoring (anchor, class) pairs above 0.05, per-class NMS at IoU 0.5, ``keep`` kept."""
    import torch
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    a = torch.as_tensor(anchors())
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": n} for c, n in enumerate(NAMES)]}
    dets = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.images), batch):
            outputs = model(split.images[start : start + batch])
            cls = torch.cat([c for c, _ in outputs], 1)
            box = torch.cat([b for _, b in outputs], 1)
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
                    dets.append(
                        {
                            "image_id": image_id,
                            "category_id": int(label[k]) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(sc[k]),
                        }
                    )
    model.train(was_training)
    for i, (boxes, labels) in enumerate(zip(split.data.boxes, split.data.labels)):
        gt["images"].append({"id": i + 1, "width": IMAGE, "height": IMAGE})
        for b, lab in zip(boxes.tolist(), labels.tolist()):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": (b[2] - b[0]) * (b[3] - b[1]),
                    "iscrowd": 0,
                }
            )
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


def rate_at(setting: Setting, iteration: int, per_epoch: int) -> float:
    """mmdetection's step policy with linear warmup: lr x0.1 after each epoch of ``setting.steps``;
    during the first ``warmup`` iterations lr * (1 - (1 - i / warmup) (1 - warmup_ratio))."""
    epoch = iteration // per_epoch
    lr = setting.lr * 0.1 ** sum(epoch >= s for s in setting.steps)
    if iteration < setting.warmup:
        lr *= 1 - (1 - iteration / setting.warmup) * (1 - setting.warmup_ratio)
    return lr


G_BINS, GR_BINS = 30, 10  # the regions the probe bins g and gr into (GHM-C's and GHM-R's released bins)


def _probe(outputs, batch, cls_loss, box_loss, mu: float) -> dict:
    """Where the classification and box gradients go, for any loss: the valid entries' g = |p - t|
    and the positives' gr = |d| / sqrt(d^2 + mu^2), binned into G_BINS / GR_BINS regions, with the
    L1 mass of the loss's actual gradient (by autograd) in each region. The same numbers for CE,
    focal loss and GHM, so their gradient distributions can be set side by side."""
    import torch

    cls = [c for c, _ in outputs]
    box = [b for _, b in outputs]
    gc = torch.autograd.grad(cls_loss, cls, retain_graph=True)
    gb = torch.autograd.grad(box_loss, box, retain_graph=True)
    with torch.no_grad():
        x, dx = torch.cat(cls, 1).reshape(-1), torch.cat(gc, 1).reshape(-1).abs()
        t = batch["cls_target"].reshape(-1)
        valid = batch["cls_weight"][..., None].expand(*batch["cls_target"].shape).reshape(-1)
        region = ((x.sigmoid() - t).abs() * G_BINS).long().clamp_(max=G_BINS - 1)
        out = {
            "g_counts": torch.bincount(region, weights=valid, minlength=G_BINS),
            "g_mass": torch.bincount(region, weights=dx * valid, minlength=G_BINS),
            "g_positive": torch.bincount(region, weights=t * valid, minlength=G_BINS),
            "g_mass_positive": torch.bincount(region, weights=dx * t * valid, minlength=G_BINS),
        }
        pos = batch["positive"].bool()
        d = (torch.cat(box, 1)[pos] - batch["box_target"][pos]).reshape(-1).double()
        db = torch.cat(gb, 1)[pos].reshape(-1).abs()
        region = (d.abs() / torch.sqrt(d * d + mu * mu) * GR_BINS).long().clamp_(max=GR_BINS - 1)
        out["gr_counts"] = torch.bincount(region, minlength=GR_BINS)
        out["gr_mass"] = torch.bincount(region, weights=db, minlength=GR_BINS)
        out["abs_d"] = torch.stack([d.abs().median(), d.abs().mean()]) if d.numel() else torch.zeros(2)
        out["probes"] = torch.ones(())
        out = {k: v.double() for k, v in out.items()}
    return out


# How a window of iterations reduces what each iteration saw: means of levels and rates, the last
# value of per-region states (beta, density), sums of counts and masses.
_MEAN = ("loss", "abs_d", "nonempty", "positive_fraction")
_LAST = ("beta", "density")


def _reduce(name: str, values: list):
    import torch

    if name.endswith(_LAST):
        return values[-1]
    stacked = torch.stack(values)
    return stacked.mean(0) if name.endswith(_MEAN) else stacked.sum(0)


def train(
    cls_name: str,
    box_name: str,
    splits: dict,
    *,
    seed: int,
    setting: Setting,
    log=None,
    eval_every: int = 2,
    windows_per_epoch: int = 2,
    probe_every: int = 4,
    test: bool = True,
    diagnostics: bool = False,
) -> dict:
    """Train the detector with one pair of losses under ``setting`` for ``setting.epochs`` epochs,
    then score it: validation AP (the learning-rate choice) and test AP (the table). ``seed`` fixes
    the initialisation, the data order and the flips, identically for every pair of losses (paired
    seeds). Returns the scores, the validation AP every ``eval_every`` epochs, the losses, and per
    window of iterations the probe's gradient distributions (every loss) and GHM's own diagnostics
    (GHM losses), summed over the window. A run whose loss turns non-finite stops there (AP 0)."""
    import torch

    model = detector(seed)
    losses = Losses(cls_name, box_name, setting, diagnostics=diagnostics)
    params = list(model.parameters())
    if setting.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=setting.lr, momentum=0.9, weight_decay=1e-4)
    elif setting.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=setting.lr, weight_decay=1e-4)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {setting.optimizer!r}")
    tr = splits["train"]
    views = [tr, splits["train_flipped"]] if setting.flip else [tr]
    gen = torch.Generator().manual_seed(seed)
    n = len(tr.images)
    per_epoch = n // setting.batch
    window = max(1, per_epoch // windows_per_epoch)
    history, acc, curve = [], {}, []
    finite, iteration, epoch = True, 0, 0
    for epoch in range(1, setting.epochs + 1):
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        for start in range(0, per_epoch * setting.batch, setting.batch):
            idx = order[start : start + setting.batch]
            flip = flips[idx] if setting.flip else torch.zeros(len(idx), dtype=torch.bool)
            batch = {
                k: torch.where(
                    flip.view(-1, *[1] * (getattr(tr, k).dim() - 1)), getattr(views[-1], k)[idx], getattr(tr, k)[idx]
                )
                for k in ("images", "cls_target", "cls_weight", "box_target", "positive")
            }
            for group in opt.param_groups:
                group["lr"] = rate_at(setting, iteration, per_epoch)
            outputs = model(batch["images"])
            cls_loss, box_loss = losses(outputs, batch)
            loss = cls_loss + box_loss
            if not torch.isfinite(loss):
                finite = False
                break
            seen = {"loss": torch.stack([cls_loss.detach(), box_loss.detach()]).double()}
            if iteration % probe_every == 0:
                seen.update(_probe(outputs, batch, cls_loss, box_loss, setting.ghmr["mu"]))
            for which, record in losses.take_record().items():
                seen.update({f"{which}_{name}": value for name, value in record.items()})
            for name, value in seen.items():
                acc.setdefault(name, []).append(value)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, setting.clip)
            opt.step()
            iteration += 1
            if iteration % window == 0:
                history.append({"iteration": iteration, **{k: _reduce(k, v).tolist() for k, v in acc.items()}})
                acc = {}
        if not finite:
            break
        if epoch % eval_every == 0 or epoch == setting.epochs:
            ap, ap50 = coco_ap(model, splits["val"])
            curve.append((epoch, ap))
            if log:
                log(f"  {cls_name} + {box_name} lr {setting.lr:g} seed {seed} epoch {epoch}: val AP {ap:.4f}")
    result = {
        "seed": seed,
        "finite": finite,
        "epochs_run": epoch,
        "curve": curve,
        "history": history,
        "iterations": iteration,
    }
    if finite:
        result["val_ap"], result["val_ap50"] = ap, ap50
        if test:
            result["test_ap"], result["test_ap50"] = coco_ap(model, splits["test"])
    else:
        result.update(val_ap=0.0, val_ap50=0.0, test_ap=0.0, test_ap50=0.0)
    result["model"] = model
    return result
