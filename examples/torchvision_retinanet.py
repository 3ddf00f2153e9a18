"""GHM-C in torchvision's RetinaNet: a classification head that replaces the sigmoid focal loss
with ``GHMCLoss`` (one histogram over every anchor of the batch, as the paper's N).

    from torchvision.models.detection import retinanet_resnet50_fpn
    from examples.torchvision_retinanet import GHMRetinaNetClassificationHead

    model = retinanet_resnet50_fpn(weights=None, num_classes=91)
    head = model.head.classification_head
    model.head.classification_head = GHMRetinaNetClassificationHead(
        in_channels=256, num_anchors=head.num_anchors, num_classes=head.num_classes)

torchvision's focal loss sums over the valid anchors and divides by the number of foreground
anchors per image; GHM-C is a mean over the valid entries (anchors x classes), so its scale
differs: tune ``loss_weight`` (the released GHM configs use 1 for GHM-C). Anchors between the
IoU thresholds (``matched_idxs == -2``) are masked, as torchvision leaves them out.

torchvision's CPU wheels do not load against the CPU build of torch this project tests with, so
the head itself is tested only where torchvision imports; ``ghm_classification_loss`` (all of its
logic) is tested everywhere (tests/test_detectors.py).
"""

from __future__ import annotations

import torch

from impl_torch import GHMCLoss

BETWEEN_THRESHOLDS = -2  # torchvision's Matcher.BETWEEN_THRESHOLDS: ignored anchors


def ghm_classification_loss(
    ghm: GHMCLoss, targets: list[dict], cls_logits: torch.Tensor, matched_idxs: list[torch.Tensor]
) -> torch.Tensor:
    """GHM-C over a batch as torchvision's RetinaNet hands it over: ``cls_logits`` (B, A, C),
    ``matched_idxs`` one (A,) tensor per image (the matched box, -1 background, -2 ignored),
    ``targets`` one dict per image with its boxes' ``labels``."""
    target = torch.zeros_like(cls_logits)
    valid = torch.zeros(cls_logits.shape[:-1], dtype=torch.bool, device=cls_logits.device)
    for i, (per_image, matched) in enumerate(zip(targets, matched_idxs)):
        foreground = matched >= 0
        target[i, foreground, per_image["labels"][matched[foreground]]] = 1.0
        valid[i] = matched != BETWEEN_THRESHOLDS
    return ghm(cls_logits, target, valid)  # valid: one weight per anchor, broadcast over the classes


try:
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead
except Exception:  # noqa: BLE001 - torchvision missing, or its operators do not load against this torch
    RetinaNetClassificationHead = None

if RetinaNetClassificationHead is not None:

    class GHMRetinaNetClassificationHead(RetinaNetClassificationHead):
        """torchvision's RetinaNet classification head with GHM-C as its loss."""

        def __init__(self, *args, ghm: GHMCLoss | None = None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.ghm = ghm if ghm is not None else GHMCLoss(bins=30, momentum=0.75)

        def compute_loss(self, targets, head_outputs, matched_idxs):
            return ghm_classification_loss(self.ghm, targets, head_outputs["cls_logits"], matched_idxs)
