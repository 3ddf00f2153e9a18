"""GHM-C and GHM-R in keras-hub's RetinaNet: a tiny detector (random init, 64x64 synthetic images)
compiled with ``GHMCLoss`` / ``GHMRLoss`` as ``classification_loss`` / ``box_loss``, trained for a
few steps with ``model.fit``, saved and reloaded as ``.keras`` (the EMA state travels with it).
The same code on every Keras 3 backend:

    pip install -e ".[tf,detect]" && python examples/keras_hub_retinanet.py
    pip install -e ".[jax,detect]" && KERAS_BACKEND=jax python examples/keras_hub_retinanet.py
    KERAS_BACKEND=torch python examples/keras_hub_retinanet.py

keras-hub's ``compute_loss`` passes one-hot ``y_true`` [B, A, C] and a per-anchor
``sample_weight`` of 1/num_positives (0 for ignored anchors; for the box loss, 0 for every
anchor but the positives). The GHM losses read ``sample_weight`` as a mask (spec.md 1), so the
1/num_positives factor does not scale them, ignored anchors are out of N and the histogram,
and GHM-R sees only the positive anchors' box targets. Nothing needs changing in user code for
training; to reload a saved detector with its losses, see ``reload`` (keras-hub does not
recompile its detectors on load). On JAX, Keras carries only the model's and the compiled
metrics' variables through its compiled step, and keras-hub's detectors refuse user metrics:
``compile_with_ghm`` hands the losses' states to the model with ``carry_state``.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_hub
import numpy as np
from keras_hub.src.layers.modeling.anchor_generator import AnchorGenerator

from impl_keras import GHMCLoss, GHMRLoss, carry_state

IMAGE = 64
CLASSES = 3


def tiny_retinanet(seed: int = 0) -> keras_hub.models.RetinaNetObjectDetector:
    """RetinaNet on a three-stage ResNet (P3 and P4), one anchor per location."""
    keras.utils.set_random_seed(seed)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=4, use_p5=False, image_shape=(IMAGE, IMAGE, 3)
    )
    anchors = AnchorGenerator(
        bounding_box_format="yxyx", min_level=3, max_level=4, num_scales=1, aspect_ratios=[1.0], anchor_size=4.0
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=CLASSES, bounding_box_format="yxyx", anchor_generator=anchors, preprocessor=None
    )


def synthetic_batch(n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Images with a 32x32 box near the anchor grid (positive anchors) and a 22x22 box on an anchor
    centre (IoU 0.47, between keras-hub's thresholds 0.4 and 0.5: ignored anchors)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, IMAGE, IMAGE, 3)).astype(np.float32)
    boxes = np.zeros((n, 2, 4), np.float32)
    labels = np.full((n, 2), -1, np.float32)
    for i in range(n):
        cy, cx = 16 + 8 * rng.integers(0, 5, 2)
        boxes[i, 0] = [cy - 16, cx - 16, cy + 16, cx + 16]
        labels[i, 0] = rng.integers(0, CLASSES)
        cy, cx = 4 + 8 * rng.integers(2, 6, 2)  # on an anchor centre, 22x22 against 32x32: IoU 0.47
        boxes[i, 1] = [cy - 11, cx - 11, cy + 11, cx + 11]
        labels[i, 1] = rng.integers(0, CLASSES)
        images[i, int(cy) - 11 : int(cy) + 11, int(cx) - 11 : int(cx) + 11, labels[i, 1].astype(int)] += 1.0
    return images, {"boxes": boxes, "labels": labels}


def compile_with_ghm(model, *, dialect: str = "mmdet") -> tuple[GHMCLoss, GHMRLoss]:
    cls_loss = GHMCLoss(bins=30, momentum=0.75, dialect=dialect)
    box_loss = GHMRLoss(mu=0.02, bins=10, momentum=0.7, dialect=dialect, loss_weight=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), classification_loss=cls_loss, box_loss=box_loss)
    carry_state(model, cls_loss, box_loss)  # JAX: carried through the compiled step
    return cls_loss, box_loss


def reload(path: str, *, dialect: str = "mmdet") -> tuple[keras.Model, GHMCLoss, GHMRLoss]:
    """Load a RetinaNet trained with the GHM losses, with its losses and their EMA state.

    keras-hub's detectors define their own ``compile()``, so Keras does not recompile them on
    load (it warns so) and the reloaded model has keras-hub's default losses. Compile again with
    the same GHM losses, build the optimizer, then ``load_weights``: the weights, the optimizer
    state and the losses' EMA state (``GHMCLoss.save_own_variables``) all come back."""
    model = keras.models.load_model(path)
    cls_loss, box_loss = compile_with_ghm(model, dialect=dialect)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return model, cls_loss, box_loss


def main() -> int:
    model = tiny_retinanet()
    cls_loss, box_loss = compile_with_ghm(model)
    images, targets = synthetic_batch(8)
    history = model.fit(images, targets, batch_size=4, epochs=3, verbose=0)
    for name, values in history.history.items():
        print(f"{name}: " + " ".join(f"{v:.4f}" for v in values))
    print(f"backend: {keras.backend.backend()}")
    print("GHM-C EMA state:", np.round(keras.ops.convert_to_numpy(cls_loss.ema), 2).tolist())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "retinanet_ghm.keras")
        model.save(path)
        _, cls_again, box_again = reload(path)
    numpy = keras.ops.convert_to_numpy
    same = all(np.array_equal(numpy(a.ema), numpy(b.ema)) for a, b in ((cls_again, cls_loss), (box_again, box_loss)))
    print(f"reloaded from .keras with the same EMA state: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
