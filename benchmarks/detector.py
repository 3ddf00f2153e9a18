"""GHM's cost per training iteration of a one-stage detector: a RetinaNet step with GHM-C + GHM-R
beside the same step with focal loss + smooth L1 (what RetinaNet trains with) and with the
official algorithm (a Python loop over regions with a host sync per region, benchmarks/impls.py).

    python -m benchmarks.detector --repeats 11         # torch and Keras, eager and compiled (~4 min on 2 CPU cores)
    python -m benchmarks.detector --frameworks torch   # one framework
    python -m benchmarks.detector --device cuda        # the torch detector on a GPU

PyTorch: a RetinaNet-style detector written here (torchvision-free): a five-stage conv backbone,
an FPN P3-P7 of 64 channels, 2-conv towers shared across levels, 9 anchors per location, 80
classes; 384x384 images, batch 2: 27,621 anchors per image, 4.4 million classification entries
per step. Anchors are matched to a handful of random boxes per image by IoU (>= 0.5 positive,
< 0.4 negative, ignored between), once, outside the timed step. Eager, and ``torch.compile``
(the model compiled once; the losses compiled with ``fullgraph=True``, except the official loop,
which cannot be: it runs eagerly after the compiled model, as it would in a user's run).

Keras: keras-hub's ``RetinaNetObjectDetector`` on a small ResNet (basic blocks, 64-64-128-256
filters; keras-hub's P3-P7 FPN and heads, 9 anchors, 80 classes), 320x320 images, batch 2:
19,206 anchors per image; ``train_on_batch`` with ``run_eagerly=True`` and with
``jit_compile=True`` (XLA), on the TensorFlow backend. Focal loss + smooth L1 is keras-hub's
default (``BinaryFocalCrossentropy``, gamma 2, + ``Huber``, both summed); the official algorithm
is the same loop in ``keras.ops`` (eagerly: a host sync per region, as in the official code;
under XLA the loop is unrolled into the graph and the syncs become selects, so it costs less
than the original would).

A step is forward + loss + backward + optimizer update. Each time is the median of ``--repeats``
steps after warm-up (which includes compilation), the loss pairs of one framework and mode run
interleaved (A B C A B C ...). "loss share" is the loss's forward + backward alone on the head's
outputs (same mode) over the whole step. Writes the table to benchmarks/results.md (its
"Per training iteration" section; ``python -m benchmarks`` keeps it).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
from pathlib import Path

import numpy as np

from .common import anchors_for, assign, iou, machine, time_group  # noqa: F401 (iou: detector.iou, as callers use it)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).parent
SECTION = "Per training iteration"
PAIRS = ("focal + smooth L1", "GHM-C + GHM-R (ours)", "official loop")
GHM_C = dict(bins=30, momentum=0.75, dialect="mmdet")
GHM_R = dict(mu=0.02, bins=10, momentum=0.7, dialect="mmdet")


def random_boxes(rng: np.random.Generator, image: int, count: int) -> np.ndarray:
    size = rng.uniform(16, image / 2, (count, 2))
    corner = rng.uniform(0, 1, (count, 2)) * (image - size)
    return np.concatenate([corner, corner + size], 1).astype(np.float32)


# ---------------------------------------------------------------- PyTorch


def torch_detector(classes: int = 80, anchors: int = 9, width: int = 64, stages=(16, 32, 64, 128, 256)):
    """A RetinaNet-style detector: stride-2 conv stages (C1..C5), an FPN (P3-P5 from C3-C5, P6 and
    P7 by stride-2 convs) and 2-conv classification and box towers shared across levels. The
    classification bias starts at the prior 0.01, as in RetinaNet."""
    import torch
    from torch import nn

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (3,) + tuple(stages)
            self.stages = nn.ModuleList(
                nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.ReLU(), nn.Conv2d(b, b, 3, 1, 1), nn.ReLU())
                for a, b in itertools.pairwise(chans)
            )
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in stages[2:])
            self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, 1, 1) for _ in stages[2:])
            self.p6, self.p7 = nn.Conv2d(stages[-1], width, 3, 2, 1), nn.Conv2d(width, width, 3, 2, 1)

            def tower(out):
                return nn.Sequential(
                    nn.Conv2d(width, width, 3, 1, 1),
                    nn.ReLU(),
                    nn.Conv2d(width, width, 3, 1, 1),
                    nn.ReLU(),
                    nn.Conv2d(width, out, 3, 1, 1),
                )

            self.cls, self.box = tower(anchors * classes), tower(anchors * 4)
            nn.init.constant_(self.cls[-1].bias, -math.log(99.0))
            self.classes = classes

        def forward(self, x):
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            c3, c4, c5 = feats[2:]
            p5 = self.lateral[2](c5)
            p4 = self.lateral[1](c4) + nn.functional.interpolate(p5, size=c4.shape[-2:], mode="nearest")
            p3 = self.lateral[0](c3) + nn.functional.interpolate(p4, size=c3.shape[-2:], mode="nearest")
            p6 = self.p6(c5)
            p7 = self.p7(torch.relu(p6))
            levels = [self.smooth[0](p3), self.smooth[1](p4), self.smooth[2](p5), p6, p7]
            n = x.shape[0]
            cls = torch.cat([self.cls(p).permute(0, 2, 3, 1).reshape(n, -1, self.classes) for p in levels], 1)
            box = torch.cat([self.box(p).permute(0, 2, 3, 1).reshape(n, -1, 4) for p in levels], 1)
            return cls, box

    return Detector()


def torch_batch(image: int, batch: int, classes: int, seed: int = 0, device: str = "cpu") -> dict:
    """Random images and a handful of random boxes per image, matched to the anchors."""
    import torch

    rng = np.random.default_rng(seed)
    anchors = anchors_for(image)
    parts = []
    for _ in range(batch):
        count = int(rng.integers(2, 9))
        parts.append(assign(anchors, random_boxes(rng, image, count), rng.integers(0, classes, count), classes))
    stack = [np.stack(p) for p in zip(*parts)]
    names = ("cls_target", "cls_weight", "box_target", "box_weight")
    out = {k: torch.as_tensor(v, device=device) for k, v in zip(names, stack)}
    out["images"] = torch.as_tensor(rng.random((batch, 3, image, image), dtype=np.float32), device=device)
    out["anchors"] = len(anchors)
    return out


def torch_loss_pairs() -> dict:
    """name -> factory of loss(cls_logits, box_pred, batch) -> scalar. Focal loss and smooth L1
    are normalized by the number of positive anchors, as in RetinaNet."""
    import torch.nn.functional as F

    from impl_torch import GHMCLoss, GHMRLoss

    from .detection import focal_loss
    from .impls import official_loop_c, official_loop_r

    def focal_smooth_l1():
        def loss(cls, box, b):
            norm = b["box_weight"].sum().clamp(min=1.0)
            sl1 = F.smooth_l1_loss(box, b["box_target"], beta=1 / 9, reduction="none") * b["box_weight"][..., None]
            return focal_loss(cls, b["cls_target"], b["cls_weight"], norm) + sl1.sum() / norm

        return loss

    def ghm():
        ghm_c, ghm_r = GHMCLoss(**GHM_C), GHMRLoss(**GHM_R)

        def loss(cls, box, b):
            k = cls.shape[-1]
            return ghm_c(
                cls.reshape(-1, k), b["cls_target"].reshape(-1, k), b["cls_weight"].reshape(-1, 1).expand(-1, k)
            ) + ghm_r(box.reshape(-1, 4), b["box_target"].reshape(-1, 4), b["box_weight"].reshape(-1, 1).expand(-1, 4))

        return loss

    def official():
        def loss(cls, box, b):
            k = cls.shape[-1]
            return official_loop_c(
                cls.reshape(-1, k),
                b["cls_target"].reshape(-1, k),
                b["cls_weight"].reshape(-1, 1).expand(-1, k),
                GHM_C["bins"],
            ) + official_loop_r(
                box.reshape(-1, 4),
                b["box_target"].reshape(-1, 4),
                b["box_weight"].reshape(-1, 1).expand(-1, 4),
                GHM_R["bins"],
                GHM_R["mu"],
            )

        return loss

    return dict(zip(PAIRS, (focal_smooth_l1, ghm, official)))


def torch_runners(mode: str, device: str, image: int, batch: int, classes: int) -> dict:
    """name -> (step(), loss_only()) for each loss pair."""
    import torch

    torch.manual_seed(0)
    model = torch_detector(classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    b = torch_batch(image, batch, classes, device=device)
    net = torch.compile(model) if mode == "compiled" else model
    with torch.no_grad():
        cls0, box0 = model(b["images"])

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    out = {}
    for name, factory in torch_loss_pairs().items():
        loss_fn = factory()
        if mode == "compiled" and name != "official loop":
            loss_fn = torch.compile(loss_fn, fullgraph=True)

        def step(loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            cls, box = net(b["images"])
            loss_fn(cls, box, b).backward()
            opt.step()
            sync()

        def loss_only(loss_fn=loss_fn):
            cls, box = cls0.detach().requires_grad_(True), box0.detach().requires_grad_(True)
            loss_fn(cls, box, b).backward()
            sync()

        out[name] = (step, loss_only)
    return out, {"anchors per image": b["anchors"], "classification entries per step": b["cls_target"].numel()}


# ---------------------------------------------------------------- Keras (keras-hub RetinaNet)


def keras_official_losses(eager: bool):
    """The official algorithm (mmdetection's GHMC / GHMR, no momentum) in keras.ops, reading
    keras-hub's per-anchor ``sample_weight`` as the label weight. Eagerly it branches on each
    region's count on the host, as the official code does; under XLA a Python branch on a tensor
    is impossible, so the count selects instead (no sync, the loop unrolled)."""
    import keras
    from keras import ops

    def weights_of(g, valid, bins, last_edge):
        edges = [i / bins for i in range(bins)] + [last_edge]
        tot = ops.maximum(ops.sum(ops.cast(valid, "float32")), 1.0)
        weights = ops.zeros_like(g)
        n = 0.0
        for i in range(bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            num = ops.sum(ops.cast(inds, "float32"))
            if eager:
                if float(ops.convert_to_numpy(num)) > 0:  # the official code's host sync
                    weights = ops.where(inds, tot / num, weights)
                    n += 1
            else:
                weights = ops.where(inds, tot / ops.maximum(num, 1.0), weights)
                n = n + ops.cast(num > 0, "float32")
        return weights / ops.maximum(n, 1.0), tot

    class OfficialGHMC(keras.losses.Loss):
        def __call__(self, y_true, y_pred, sample_weight=None):
            valid = ops.broadcast_to(ops.expand_dims(sample_weight > 0, -1), ops.shape(y_pred))
            g = ops.abs(ops.sigmoid(ops.stop_gradient(y_pred)) - y_true)
            weights, tot = weights_of(g, valid, GHM_C["bins"], 1.0 + 1e-6)
            bce = ops.maximum(y_pred, 0) - y_pred * y_true + ops.log1p(ops.exp(-ops.abs(y_pred)))
            return ops.sum(bce * weights) / tot

    class OfficialGHMR(keras.losses.Loss):
        def __call__(self, y_true, y_pred, sample_weight=None):
            mu = GHM_R["mu"]
            valid = ops.broadcast_to(ops.expand_dims(sample_weight > 0, -1), ops.shape(y_pred))
            diff = y_pred - y_true
            loss = ops.sqrt(diff * diff + mu * mu) - mu
            g = ops.abs(ops.stop_gradient(diff) / ops.sqrt(mu * mu + ops.stop_gradient(diff) ** 2))
            weights, tot = weights_of(g, valid, GHM_R["bins"], 1e3)
            return ops.sum(loss * weights) / tot

    return OfficialGHMC(), OfficialGHMR()


def keras_runners(mode: str, image: int, batch: int, classes: int) -> tuple[dict, dict]:
    import keras
    import keras_hub

    from impl_keras import GHMCLoss, GHMRLoss, carry_state

    rng = np.random.default_rng(0)
    images = rng.random((batch, image, image, 3), dtype=np.float32)
    boxes = np.full((batch, 8, 4), -1.0, np.float32)
    labels = np.full((batch, 8), -1.0, np.float32)
    for i in range(batch):
        count = int(rng.integers(2, 9))
        xyxy = random_boxes(rng, image, count)
        boxes[i, :count] = xyxy[:, [1, 0, 3, 2]]  # yxyx
        labels[i, :count] = rng.integers(0, classes, count)
    y = {"boxes": boxes, "labels": labels}

    def detector():
        keras.utils.set_random_seed(0)
        encoder = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 64, 128, 256],
            stackwise_num_blocks=[1, 1, 1, 1],
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="basic_block",
            use_pre_activation=False,
            image_shape=(None, None, 3),
        )
        backbone = keras_hub.models.RetinaNetBackbone(
            image_encoder=encoder, min_level=3, max_level=7, use_p5=False, image_shape=(image, image, 3)
        )
        return keras_hub.models.RetinaNetObjectDetector(
            backbone=backbone, num_classes=classes, bounding_box_format="yxyx", preprocessor=None
        )

    out = {}
    eager = mode == "eager"
    for name in PAIRS:
        model = detector()
        kwargs = dict(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), run_eagerly=eager, jit_compile=not eager)
        if name == PAIRS[0]:
            model.compile(**kwargs)  # keras-hub's defaults: BinaryFocalCrossentropy + Huber
        elif name == PAIRS[1]:
            losses = GHMCLoss(**GHM_C), GHMRLoss(**GHM_R)
            model.compile(classification_loss=losses[0], box_loss=losses[1], **kwargs)
            carry_state(model, *losses)
        else:
            c, r = keras_official_losses(eager)
            model.compile(classification_loss=c, box_loss=r, **kwargs)

        def step(model=model):
            # keras.Model's own: keras-hub's PipelineModel.train_on_batch converts ``y`` with
            # convert_to_tensor, which refuses the detector's dict of boxes and labels (keras-hub 0.32)
            keras.Model.train_on_batch(model, images, y)

        out[name] = (step, None)
    anchors = len(anchors_for(image))  # keras-hub's generator: the same P3-P7, 9 per location
    return out, {"anchors per image": anchors, "classification entries per step": anchors * classes * batch}


def keras_loss_only(image: int, batch: int, classes: int, eager: bool) -> dict:
    """The loss pair alone (forward + backward w.r.t. the head's outputs) at keras-hub's shapes."""
    import keras
    import tensorflow as tf

    from impl_keras import GHMCLoss, GHMRLoss

    anchors = len(anchors_for(image))
    rng = np.random.default_rng(1)
    cls = tf.constant(rng.normal(size=(batch, anchors, classes)).astype(np.float32) * 2 - 4)
    box = tf.constant(rng.normal(size=(batch, anchors, 4)).astype(np.float32) * 0.1)
    cls_t = tf.constant((rng.random((batch, anchors, classes)) < 1e-3).astype(np.float32))
    box_t = tf.constant(rng.normal(size=(batch, anchors, 4)).astype(np.float32) * 0.1)
    w_cls = tf.constant((rng.random((batch, anchors)) < 0.98).astype(np.float32))
    w_box = tf.constant((rng.random((batch, anchors)) < 1e-3).astype(np.float32))
    pairs = {
        PAIRS[0]: (
            keras.losses.BinaryFocalCrossentropy(from_logits=True, reduction="sum"),  # keras-hub's "auto"
            keras.losses.Huber(reduction="sum"),
        ),
        PAIRS[1]: (GHMCLoss(**GHM_C), GHMRLoss(**GHM_R)),
        PAIRS[2]: keras_official_losses(eager),
    }
    out = {}
    for name, (lc, lr) in pairs.items():

        def run(lc=lc, lr=lr):
            with tf.GradientTape() as tape:
                tape.watch([cls, box])
                loss = lc(cls_t, cls, sample_weight=w_cls) + lr(box_t, box, sample_weight=w_box)
            return tape.gradient(loss, [cls, box])

        fn = run if eager else tf.function(run, jit_compile=True)

        def timed(fn=fn):
            fn()[0].numpy()

        out[name] = timed
    return out


# ---------------------------------------------------------------- timing and the report


def measure(framework: str, mode: str, args) -> tuple[dict, dict, dict]:
    """(step seconds, loss-only seconds, facts) per loss pair."""
    if framework == "torch":
        import torch

        torch._dynamo.reset()
        runners, facts = torch_runners(mode, args.device, args.image, args.batch, args.classes)
        steps = time_group({k: v[0] for k, v in runners.items()}, args.repeats)
        alone = time_group({k: v[1] for k, v in runners.items()}, args.repeats)
        facts["setup"] = (
            f"torchvision-free RetinaNet-style, {args.image}x{args.image}, batch {args.batch}, "
            f"{args.classes} classes, SGD; {torch.get_num_threads()} threads"
        )
    else:
        import keras

        if keras.backend.backend() != "tensorflow":
            sys.exit(
                "the Keras part times keras-hub's RetinaNet on the TensorFlow backend: unset KERAS_BACKEND "
                "or run with --frameworks torch"
            )
        image = args.keras_image
        runners, facts = keras_runners(mode, image, args.batch, args.classes)
        steps = time_group({k: v[0] for k, v in runners.items()}, args.repeats)
        alone = time_group(keras_loss_only(image, args.batch, args.classes, mode == "eager"), args.repeats)
        facts["setup"] = (
            f"keras-hub RetinaNet, ResNet basic blocks 64-64-128-256, {image}x{image}, batch "
            f"{args.batch}, {args.classes} classes, SGD; TensorFlow backend"
        )
    return steps, alone, facts


def report(results: list, argv: list[str], device: str) -> str:
    lines = [
        f"## {SECTION}",
        "",
        f"Machine: {machine()}; device {device}.",
        f"Command: `python -m benchmarks.detector {' '.join(argv)}`",
        "",
        "One training step (forward, loss, backward, optimizer update) of a one-stage detector, median of "
        "interleaved steps after warm-up. ours / focal and official / focal: the step time with GHM-C + GHM-R "
        "(impl_torch / impl_keras; mmdet dialect, momentum 0.75 and 0.7) and with the official per-region loop, "
        "over the step with focal loss + smooth L1. Loss share: the loss pair's forward + backward alone on the "
        "head's outputs over the step.",
        "",
        "| framework, mode | detector | anchors / image | focal step ms | ours step ms | official step ms | "
        "ours / focal | official / focal | loss share: focal, ours, official |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for framework, mode, steps, alone, facts in results:
        f, o, off = (steps[p] for p in PAIRS)
        share = ", ".join(f"{alone[p] / steps[p]:.0%}" for p in PAIRS)
        lines.append(
            f"| {framework} {mode} | {facts['setup']} | {facts['anchors per image']:,} | {f * 1e3:.0f} | "
            f"{o * 1e3:.0f} | {off * 1e3:.0f} | {o / f:.2f}x | {off / f:.2f}x | {share} |"
        )
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) this script's section of results.md, leaving the rest as it is."""
    old = path.read_text() if path.exists() else ""
    head = old.split(f"## {SECTION}")[0].rstrip("\n")
    path.write_text((head + "\n\n" if head else "") + text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.detector", description=__doc__.splitlines()[0])
    ap.add_argument("--frameworks", default="torch,keras")
    ap.add_argument(
        "--modes", default="eager,compiled", help="eager and/or compiled (torch.compile; Keras jit_compile)"
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the torch detector's device")
    ap.add_argument("--image", type=int, default=384, help="torch detector's image side")
    ap.add_argument("--keras-image", type=int, default=320, help="keras-hub RetinaNet's image side")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--output", default=str(HERE / "results.md"), help="the results file whose section to write")
    args = ap.parse_args(argv)
    results = []
    for framework in args.frameworks.split(","):
        for mode in args.modes.split(","):
            steps, alone, facts = measure(framework, mode, args)
            results.append((framework, mode, steps, alone, facts))
            print(
                f"{framework} {mode}: "
                + ", ".join(f"{k} {v * 1e3:.0f} ms (loss alone {alone[k] * 1e3:.0f} ms)" for k, v in steps.items()),
                file=sys.stderr,
                flush=True,
            )
    text = report(results, argv if argv is not None else sys.argv[1:], args.device)
    print(text)
    write_section(Path(args.output), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
