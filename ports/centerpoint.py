"""The GHM-C and GHM-R of Det3D as CenterPoint (3D detection) ships them, marked "THIS LOSS IS
NOT WORKING" by its authors: per-entry losses of (batch, anchors, classes) predictions with
per-anchor weights.

Source: tianweiy/CenterPoint @ b66c1bdb49c051e104b3088cb9b9bea3d7a904a8,
det3d/models/losses/ghm_loss.py. Download: ``git clone https://github.com/tianweiy/CenterPoint
DIR/tianweiy/CenterPoint && git -C DIR/tianweiy/CenterPoint checkout b66c1bd``.

Load-time patch: ``from det3d.models.losses.losses import Loss, _sigmoid_cross_entropy_with_logits``
gets Det3D's ``Loss`` (``loss(pred, target, **params)`` calls ``_compute_loss``) and its sigmoid
cross entropy (``max(x, 0) - x t + log1p(exp(-|x|))``), transcribed.

Wiring, as Det3D's heads call them: one-hot targets and one weight per anchor (the kit's class
index cases), predictions reshaped to (1, anchors, classes); GHMCLoss returns per-entry losses
(averaged over the valid entries by the kit), GHMRLoss per-entry losses already divided by the
anchors, which the head sums.
"""

import torch

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load, stub

SOURCE = Source("tianweiy/CenterPoint", "b66c1bdb49c051e104b3088cb9b9bea3d7a904a8", "det3d/models/losses/ghm_loss.py")
PATCHES = (
    "`from det3d.models.losses.losses import Loss, _sigmoid_cross_entropy_with_logits`: Det3D's Loss "
    "(__call__ runs _compute_loss) and sigmoid cross entropy, transcribed",
)


class Loss:
    def __call__(self, prediction_tensor, target_tensor, ignore_nan_targets=False, scope=None, **params):
        if ignore_nan_targets:
            target_tensor = torch.where(torch.isnan(target_tensor), prediction_tensor, target_tensor)
        return self._compute_loss(prediction_tensor, target_tensor, **params)


def _sigmoid_cross_entropy_with_logits(logits, labels):
    loss = torch.clamp(logits, min=0) - logits * labels.type_as(logits)
    return loss + torch.log1p(torch.exp(-torch.abs(logits)))


def _module():
    losses = stub(
        "det3d.models.losses.losses", Loss=Loss, _sigmoid_cross_entropy_with_logits=_sigmoid_cross_entropy_with_logits
    )
    return load(
        SOURCE,
        module_name="centerpoint_port.ghm_loss",
        stubs={
            "det3d": stub("det3d"),
            "det3d.models": stub("det3d.models"),
            "det3d.models.losses": stub("det3d.models.losses"),
            "det3d.models.losses.losses": losses,
        },
    )


class _Head:
    """pred (N, C), labels (N,) with C = background, weights (N,) -> Det3D's (1, N, C) call."""

    def __init__(self, loss, reduce):
        self.loss, self.reduce = loss, reduce

    def __call__(self, pred, labels, weights):
        n, c = pred.shape
        onehot = (labels[:, None] == torch.arange(c)).to(pred.dtype)
        out = self.loss(pred.view(1, n, c), onehot.view(1, n, c), weights=weights.view(1, n)).view(n, c)
        return out.sum() if self.reduce else out


class _RegressionHead(_Head):
    def __call__(self, pred, target, weights):
        n, c = pred.shape
        return self.loss(pred.view(1, n, c), target.view(1, n, c), weights=weights.view(1, n)).sum()


ghmc = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _Head(_module().GHMCLoss(bins, momentum), False), targets="class_index"
    )
)
ghmr = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum, mu: _RegressionHead(_module().GHMRLoss(mu, bins, momentum), True), weights="per_anchor"
    )
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    PATCHES,
    [
        PortEntry(
            "GHMCLoss (Det3D)",
            "ghmc",
            "c",
            "loss(pred (B, A, C), one-hot target, weights=(B, A)), per entry",
            "dialect: mmdet except the gradient at pred = 0 exactly; fails: value, ema, ema_empty, scale, "
            "one_region, masked, all_masked, finite_diff; notes: reads masked values (NaN/Inf there propagates)",
            "the official semantics, but masked anchors are counted (valid = weight >= 0, not > 0), and its "
            "hand-written cross entropy max(x, 0) - x t + log1p(exp(-|x|)) gets a wrong autograd gradient at a "
            "logit of exactly 0 ((1 - t) instead of (1/2 - t): the subgradients of clamp and abs there)",
            wiring="as Det3D's heads call it: one weight per anchor",
        ),
        PortEntry(
            "GHMRLoss (Det3D)",
            "ghmr",
            "r",
            "loss(pred (B, A, 4), target, weights=(B, A)), summed",
            "conforms: mmdet; notes: reads masked values (NaN/Inf there propagates)",
            "the official semantics, per anchor (its per-entry losses carry the 1/N, the head sums them)",
            wiring="as Det3D's heads call it: per-anchor weights, the per-entry losses summed",
        ),
    ],
    copies=("NathanDrake67/R2LDM",),
)
