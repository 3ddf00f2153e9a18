"""JennyVanessa/Paddle-GHM: the Paddle GHMC of tsdlrh/GHM_paddle registered in PaddleDetection
(``@register``), with mmdetection's ``target.float()`` / ``label_weight.float()`` kept; the same
scalar ``weights = tot / num_in_bin`` (see ``ports.paddle_ghm``).

Source: JennyVanessa/Paddle-GHM @ a2f11ca455ffda9e63fa47d68cbeb16e1ee12b40, ghm_loss.py. Download:
``git clone https://github.com/JennyVanessa/Paddle-GHM DIR/JennyVanessa/Paddle-GHM && git -C
DIR/JennyVanessa/Paddle-GHM checkout a2f11ca``. Needs PaddlePaddle (``pip install paddlepaddle``).

Load-time patch: ``from ppdet.core.workspace import register`` gets a stub whose ``register``
returns the class unchanged.
"""

from ._load import Adapter, LazyFactory, PortEntry, Source, load, stub
from .paddle_ghm import READING_C, SCALAR, from_paddle_layer

SOURCE = Source("JennyVanessa/Paddle-GHM", "a2f11ca455ffda9e63fa47d68cbeb16e1ee12b40", "ghm_loss.py")
PATCHES = ("`from ppdet.core.workspace import register`: a stub (register returns the class)",)


def _module():
    workspace = stub("ppdet.core.workspace", register=lambda cls: cls)
    return load(
        SOURCE,
        module_name="paddle_ghm_ppdet_port.ghm_loss",
        stubs={"ppdet": stub("ppdet"), "ppdet.core": stub("ppdet.core"), "ppdet.core.workspace": workspace},
    )


ghmc = LazyFactory(lambda: from_paddle_layer(lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum)))

ADAPTER = Adapter(
    SOURCE,
    "paddle",
    PATCHES,
    [
        PortEntry(
            "GHMC (PaddleDetection)",
            "ghmc",
            "c",
            "layer(pred, target, label_weight), all (N, C)",
            READING_C,
            SCALAR + "; and Paddle's BCE-with-logits gradient at a logit of exactly 0 is not 1/2 - t",
        ),
    ],
    package="paddle",
    origin="tsdlrh/GHM_paddle",
)
