"""Two PaddlePaddle translations of mmdetection 1.x's GHMC (and GHMR), from a Paddle reproduction
of the paper (tsdlrh/GHM_paddle, RetinaNet on COCO) and its PaddleDetection variant
(JennyVanessa/Paddle-GHM, registered with ``ppdet.core.workspace.register``). Both replace
mmdetection's ``weights[inds] = tot / num_in_bin`` by ``weights = tot / num_in_bin``: the weight
tensor becomes one number, the last non-empty region's weight, for every entry.

Sources: tsdlrh/GHM_paddle @ 4b5106e7fe0cfc13db093009b6488323c3d75890, ghm_loss.py;
JennyVanessa/Paddle-GHM @ a2f11ca455ffda9e63fa47d68cbeb16e1ee12b40, ghm_loss.py. Download:
``git clone https://github.com/tsdlrh/GHM_paddle DIR/tsdlrh/GHM_paddle && git -C DIR/tsdlrh/GHM_paddle
checkout 4b5106e`` (and likewise JennyVanessa/Paddle-GHM @ a2f11ca). Needs PaddlePaddle
(``pip install paddlepaddle``), which is not a dependency of this project.

Load-time patches: ``from ppdet.core.workspace import register`` (Paddle-GHM) gets a stub whose
``register`` returns the class. Wiring: ``loss(pred, target, label_weight)`` on Paddle tensors, the
gradient by ``loss.backward()``.
"""

import numpy as np

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("tsdlrh/GHM_paddle", "4b5106e7fe0cfc13db093009b6488323c3d75890", "ghm_loss.py")


def _module():
    return load(SOURCE, module_name="paddle_ghm_port.ghm_loss")


def from_paddle_layer(layer_factory, *, label_weight: bool = True):
    """A Paddle loss layer as a port: ``layer(pred, target, label_weight)``, gradient by backward."""

    def make_port(*, bins, momentum, **hyper):
        import paddle

        layer = layer_factory(bins=bins, momentum=momentum, **hyper)

        def step(pred, target, lw):
            x = paddle.to_tensor(pred, stop_gradient=False)
            args = (x, paddle.to_tensor(target)) + ((paddle.to_tensor(lw),) if label_weight else ())
            loss = layer(*args)
            loss.backward()
            grad = np.zeros_like(pred) if x.grad is None else np.asarray(x.grad.numpy())
            return float(loss.numpy()), grad

        return step

    make_port.label_weight = label_weight
    make_port.framework = "paddle"
    return make_port


ghmc = LazyFactory(lambda: from_paddle_layer(lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum)))
ghmr = LazyFactory(
    lambda: from_paddle_layer(lambda bins, momentum, mu: _module().GHMR(mu=mu, bins=bins, momentum=momentum))
)

READING_C = (
    "dialect: neither; fails: value, ema, ema_empty, saturated, scale, one_region (the gradient at pred = 0 "
    "exactly), masked, finite_diff (the gradient at pred = 0 exactly); notes: reads masked values (NaN/Inf "
    "there propagates)"
)
SCALAR = (
    "`weights = tot / num_in_bin` makes the weights one number (the last non-empty region's) for every "
    "entry: the loss is not harmonized"
)
ADAPTER = Adapter(
    SOURCE,
    "paddle",
    (),
    [
        PortEntry(
            "GHMC (Paddle)",
            "ghmc",
            "c",
            "layer(pred, target, label_weight), all (N, C)",
            READING_C,
            SCALAR + "; and Paddle's BCE-with-logits gradient at a logit of exactly 0 is not 1/2 - t",
        ),
        PortEntry(
            "GHMR (Paddle)",
            "ghmr",
            "r",
            "layer(pred, target, label_weight), all (N, 4)",
            "dialect: neither; fails: value, ema, ema_empty, saturated, scale, uniform, one_region, masked, "
            "finite_diff; notes: reads masked values (NaN/Inf there propagates)",
            SCALAR + "; `paddle.to_tensor` around the ASL1 cuts the graph: the gradient is 0",
        ),
    ],
    package="paddle",
)
