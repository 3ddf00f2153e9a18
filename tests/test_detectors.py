"""The losses inside real detectors' call contracts: keras-hub's RetinaNet (training, the inputs
it passes, saving), mmdetection's anchor-head calls (replayed: mmdetection itself needs a
compiled mmcv), and torchvision's RetinaNet head (its loss logic everywhere; the head where
torchvision imports)."""

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import reference
from tolerances import TOLERANCE

EXAMPLES = Path(__file__).parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))


def close(got, want, what=""):
    np.testing.assert_allclose(got, want, **TOLERANCE["float32"], err_msg=what)


# ---------------------------------------------------------------- keras-hub RetinaNet


def test_keras_hub_retinanet_trains_with_ghm_and_reloads_its_state():
    pytest.importorskip("keras_hub", reason="keras-hub is the optional extra [detect]")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import keras_hub_retinanet as kh
    import tensorflow as tf

    from impl_tf import GHMCLoss, GHMRLoss

    seen = {}

    def capturing(cls, key):
        class Capture(cls):
            def __call__(self, y_true, y_pred, sample_weight=None):
                if tf.executing_eagerly():
                    seen[key] = (np.asarray(y_true), np.asarray(y_pred), np.asarray(sample_weight))
                return super().__call__(y_true, y_pred, sample_weight)

        return Capture

    images, targets = kh.synthetic_batch(4)
    model = kh.tiny_retinanet()
    cls_loss = capturing(GHMCLoss, "cls")(bins=30, dialect="mmdet")
    box_loss = capturing(GHMRLoss, "box")(mu=0.02, bins=10, dialect="mmdet")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), classification_loss=cls_loss, box_loss=box_loss)
    model.compute_loss(x=images, y=targets, y_pred=model(images), sample_weight=None)
    # what keras-hub passed: one-hot targets, and per-anchor weights of 1/num_positives (0: ignored)
    y_cls, p_cls, w_cls = seen["cls"]
    y_box, p_box, w_box = seen["box"]
    positives = w_box > 0
    assert positives.any() and (w_cls == 0).any(), "the batch must hold positive and ignored anchors"
    assert np.allclose(w_cls[w_cls > 0], 1.0 / positives.sum()), "keras-hub's weights are 1/num_positives"
    got_cls = float(GHMCLoss(bins=30, dialect="mmdet")(y_cls, p_cls, w_cls))
    got_box = float(GHMRLoss(mu=0.02, bins=10, dialect="mmdet")(y_box, p_box, w_box))
    # the weights act as a mask: ignored anchors out of N and the histogram, no 1/num_positives factor
    close(got_cls, reference.ghm_c(p_cls, y_cls, w_cls > 0, bins=30, dialect="mmdet").loss, "classification")
    # GHM-R sees only the positive anchors' box targets
    close(got_box, reference.ghm_r(p_box[positives], y_box[positives], bins=10, dialect="mmdet").loss, "boxes")

    model = kh.tiny_retinanet()
    cls_ema, box_ema = kh.compile_with_ghm(model)
    model.fit(images, targets, batch_size=2, epochs=2, verbose=0)
    assert cls_ema.ema_initialized.numpy() and cls_ema.ema.numpy().sum() > 0, "the EMA state moves in fit"
    assert box_ema.ema.numpy().sum() > 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        _, cls_again, box_again = kh.reload(path)
    np.testing.assert_array_equal(cls_again.ema.numpy(), cls_ema.ema.numpy())
    np.testing.assert_array_equal(box_again.ema.numpy(), box_ema.ema.numpy())


# ---------------------------------------------------------------- mmdetection's call contract


def _anchor_head_batch(num_classes=4, seed=0):
    """What an mmdetection anchor head passes its losses for two images (anchors concatenated):
    labels (N,) with C = background, label_weights (N,) with 0 for ignored anchors, box targets
    and weights (N, 4) with weights 1 on positive anchors only, avg_factor = #positives."""
    rng = np.random.default_rng(seed)
    n = 37 + 52  # two images with different anchor counts
    cls_score = rng.normal(size=(n, num_classes)).astype(np.float32) * 2
    labels = np.full(n, num_classes)
    pos = rng.choice(n, 12, replace=False)
    labels[pos] = rng.integers(0, num_classes, 12)
    label_weights = np.ones(n, np.float32)
    label_weights[rng.choice(np.setdiff1d(np.arange(n), pos), 9, replace=False)] = 0.0
    bbox_pred = rng.normal(size=(n, 4)).astype(np.float32) * 0.2
    bbox_targets = np.zeros((n, 4), np.float32)
    bbox_targets[pos] = bbox_pred[pos] + rng.normal(size=(12, 4)).astype(np.float32) * 0.05
    bbox_weights = np.zeros((n, 4), np.float32)
    bbox_weights[pos] = 1.0
    return cls_score, labels, label_weights, bbox_pred, bbox_targets, bbox_weights, float(len(pos))


@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_mmdetection_anchor_head_call_pattern(dialect):
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss, GHMRLoss

    cls_score, labels, label_weights, bbox_pred, bbox_targets, bbox_weights, avg = _anchor_head_batch()
    loss_cls = GHMCLoss(bins=30, momentum=0.75, dialect=dialect, loss_weight=1.0)
    loss_bbox = GHMRLoss(mu=0.02, bins=10, momentum=0.7, dialect=dialect, loss_weight=10.0)
    t = torch.tensor
    state_c = state_r = None
    for _ in range(2):  # two iterations: the EMA as mmdetection's loop drives it
        c = loss_cls(t(cls_score), t(labels), t(label_weights), avg_factor=avg)
        b = loss_bbox(t(bbox_pred), t(bbox_targets), t(bbox_weights), avg_factor=avg)
        ref_c = reference.ghm_c(
            cls_score, labels, label_weights, bins=30, momentum=0.75, state=state_c, dialect=dialect
        )
        ref_b = reference.ghm_r(
            bbox_pred,
            bbox_targets,
            bbox_weights,
            mu=0.02,
            bins=10,
            momentum=0.7,
            state=state_r,
            dialect=dialect,
            loss_weight=10.0,
        )
        state_c, state_r = ref_c.state, ref_b.state
        close(c.item(), ref_c.loss, "loss_cls")  # avg_factor is accepted and ignored: GHM's own N
        close(b.item(), ref_b.loss, "loss_bbox")
    # reduction_override, as some heads pass it
    per_entry = loss_cls(t(cls_score), t(labels), t(label_weights), reduction_override="none")
    assert per_entry.shape == cls_score.shape
    with pytest.raises(ValueError, match="reduction"):
        loss_cls(t(cls_score), t(labels), t(label_weights), reduction_override="avg")


# ---------------------------------------------------------------- torchvision's RetinaNet head


def test_torchvision_head_loss_logic_matches_the_reference():
    torch = pytest.importorskip("torch")
    from torchvision_retinanet import ghm_classification_loss

    from impl_torch import GHMCLoss

    rng = np.random.default_rng(3)
    batch, anchors, classes = 2, 30, 5
    logits = rng.normal(size=(batch, anchors, classes)).astype(np.float32)
    targets = [{"labels": torch.tensor([1, 4])}, {"labels": torch.tensor([0, 2, 3])}]
    matched = [
        torch.tensor(rng.choice([-2, -1, -1, -1, 0, 1], anchors)),
        torch.tensor(rng.choice([-2, -1, -1, 0, 1, 2], anchors)),
    ]
    got = ghm_classification_loss(GHMCLoss(bins=10), targets, torch.tensor(logits), matched)
    onehot = np.zeros_like(logits)
    valid = np.zeros((batch, anchors))
    for i in range(batch):
        m = matched[i].numpy()
        for a in range(anchors):
            if m[a] >= 0:
                onehot[i, a, targets[i]["labels"][m[a]]] = 1.0
        valid[i] = m != -2
    close(got.item(), reference.ghm_c(logits, onehot, valid, bins=10).loss)


def test_torchvision_retinanet_head_subclass():
    try:
        import torchvision  # noqa: F401
        from torchvision.models.detection import retinanet_resnet50_fpn
    except Exception as e:  # noqa: BLE001
        pytest.skip(
            f"torchvision cannot be imported here ({type(e).__name__}: {e}); its CPU wheels do not load "
            f"against this project's CPU torch"
        )
    import torch
    from torchvision_retinanet import GHMRetinaNetClassificationHead

    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    head = model.head.classification_head
    model.head.classification_head = GHMRetinaNetClassificationHead(
        in_channels=256, num_anchors=head.num_anchors, num_classes=3
    )
    model.train()
    images = [torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 60.0]]), "labels": torch.tensor([1])}]
    losses = model(images, targets)
    assert torch.isfinite(losses["classification"])
    losses["classification"].backward()
