"""What the benchmarks share: timing (interleaved medians), the machine's description, and the
anchor geometry of a one-stage detector (RetinaNet's anchors, IoU, box encoding, anchor
assignment; NumPy). ``python -m benchmarks``, ``benchmarks.detector`` and ``benchmarks.detection``
import these from here and not from each other."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time

import numpy as np

# ---------------------------------------------------------------- timing and the machine


def time_group(runners: dict, repeats: int) -> dict[str, float]:
    """Median seconds per forward + backward of each runner, measured interleaved."""
    for run in runners.values():
        run()
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [f"{cpu}, {os.cpu_count()} logical CPUs", f"Python {platform.python_version()}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    try:
        import tensorflow as tf

        parts.append(f"TensorFlow {tf.__version__}")
    except ImportError:
        pass
    try:
        import jax

        parts.append(f"JAX {jax.__version__}")
    except ImportError:
        pass
    return "; ".join(parts)


# ---------------------------------------------------------------- anchors and targets (NumPy)


def anchors_for(
    image: int, levels=range(3, 8), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)), ratios=(0.5, 1.0, 2.0), size: float = 4.0
) -> np.ndarray:
    """RetinaNet's anchors (x1, y1, x2, y2), level by level, row-major, 9 per location."""
    out = []
    for level in levels:
        stride = 2**level
        cells = math.ceil(image / stride)
        centres = (np.arange(cells) + 0.5) * stride
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        shapes = [(size * stride * s * math.sqrt(r), size * stride * s / math.sqrt(r)) for s in scales for r in ratios]
        wh = np.array(shapes)  # (9, 2): w, h
        c = np.stack([cx.ravel(), cy.ravel()], -1)[:, None, :]  # (cells^2, 1, 2)
        out.append(np.concatenate([c - wh / 2, c + wh / 2], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of boxes (x1, y1, x2, y2)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def encode(anchors: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Box offsets (dx, dy, dw, dh) of each anchor to its box, RetinaNet's parametrization."""
    wa, ha = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    wb, hb = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    xa, ya = anchors[:, 0] + wa / 2, anchors[:, 1] + ha / 2
    xb, yb = boxes[:, 0] + wb / 2, boxes[:, 1] + hb / 2
    return np.stack([(xb - xa) / wa, (yb - ya) / ha, np.log(wb / wa), np.log(hb / ha)], -1).astype(np.float32)


def assign(
    anchors: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    classes: int,
    *,
    pos: float = 0.5,
    neg: float = 0.4,
    low_quality: bool = False,
) -> tuple[np.ndarray, ...]:
    """Per anchor: one-hot class target (A, K), classification weight (A,) (0: ignored, between
    the thresholds), box offsets (A, 4), box weight (A,) (1 on positives). ``low_quality``: each
    box's best anchors are positive too (torchvision's RetinaNet), so no object goes unmatched."""
    cls_target = np.zeros((len(anchors), classes), np.float32)
    if len(boxes) == 0:
        zeros = np.zeros(len(anchors), np.float32)
        return cls_target, zeros + 1, np.zeros((len(anchors), 4), np.float32), zeros
    overlap = iou(anchors, boxes)
    best, which = overlap.max(1), overlap.argmax(1)
    positive = best >= pos
    if low_quality:
        for j in range(len(boxes)):
            top = overlap[:, j] == overlap[:, j].max()
            positive |= top
            which[top] = j
    cls_target[positive, labels[which[positive]]] = 1.0
    cls_weight = ((best < neg) | positive).astype(np.float32)
    return cls_target, cls_weight, encode(anchors, boxes[which]), positive.astype(np.float32)
