"""mmdetection 2.x GHMC and GHMR, as ``open-mmlab/mmdetection`` shipped them before v2.16 (the
official code carried from GHM_Detection: BCE / literal ASL1 over every entry times the weights,
a Python loop over regions with a host sync each, the accumulator from zeros), here as the fork
fengyouliang/wheat_detection keeps the file (mmdetection's own repository is past the size this
census downloads; open-mmlab/mmdetection @ 3b620ebd holds the same code).

Source: fengyouliang/wheat_detection @ 1034be436c210fb988eec644cab027a9422b5c44,
mmdet/models/losses/ghm_loss.py. Download: ``git clone https://github.com/fengyouliang/wheat_detection
DIR/fengyouliang/wheat_detection && git -C DIR/fengyouliang/wheat_detection checkout 1034be4``.

Copies found: the path mmdet/models/losses/ghm_loss.py is held by 27 other repositories besides
open-mmlab/mmdetection (forks and detection projects, mmdetection 1.x to 3.x; ``COPIES``), and the
same code under other paths (Singingkettle/ChangShuoRadioRecognition, hhaAndroid/mmdetection-mini
with comments, wanglaotou/ssd_mbv2_fpn's ghm_loss_official.py): counted once, under mmdetection.

Load-time patch: ``from ..builder import LOSSES`` gets a registry stub whose
``register_module()`` returns the class unchanged.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Registry, Source, load, stub

SOURCE = Source(
    "fengyouliang/wheat_detection", "1034be436c210fb988eec644cab027a9422b5c44", "mmdet/models/losses/ghm_loss.py"
)
COPIES = (
    "CurryYuan/mmdetection",
    "Einspanner123/chromosome-kd",
    "Jion-Oshima/mmdetection",
    "JohannesLiu/Deep-Learning-Loss-Function-Collection-for-Imbalanced-Data",
    "Li-Hongda/det",
    "Sense-X/TSD",
    "ShengkaiWu/IoU-aware-single-stage-object-detector",
    "UAVAI-code/DGTrack-code",
    "VinAIResearch/LP-OVOD",
    "a157801/TSD",
    "cjolivier01/mmdetection",
    "daixinguang/DBNet",
    "dandelin/mmdetection",
    "dutxubo/mmdetection",
    "facebookresearch/Generic-Grouping",
    "ggjy/HitDet.pytorch",
    "hhaAndroid/mmdetection-mini",
    "hyperlist/mmdetection",
    "intflow/s2anet",
    "leftthomas/CARAFE",
    "lizhihao6/mmdetection",
    "nuogel/lg_pro_sets",
    "ltjcherry/DetectFormer",
    "nijkah/Seodore",
    "shuyangsun/mmdetection",
    "stevenwudi/Kaggle_PKU_Baidu",
    "wangyue377/GSD-AL",
    "xiaoxiaoxh/mmdetection",
    "Singingkettle/ChangShuoRadioRecognition",
    "wanglaotou/ssd_mbv2_fpn",
)
PATCHES = ("`from ..builder import LOSSES`: a registry stub (register_module returns the class)",)
READS_MASKED = "conforms: mmdet; notes: reads masked values (NaN/Inf there propagates)"


def _module():
    return load(
        SOURCE,
        module_name="mmdet_port.models.losses.ghm_loss",
        stubs={"mmdet_port.models.builder": stub("mmdet_port.models.builder", LOSSES=Registry())},
    )


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum)))
ghmc_class_index = LazyFactory(
    lambda: from_torch_module(
        lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum), targets="class_index"
    )
)
ghmr = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMR(mu=mu, bins=bins, momentum=momentum))
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    PATCHES,
    [
        PortEntry(
            "GHMC",
            "ghmc",
            "c",
            "module(pred, target, label_weight), all (N, C)",
            READS_MASKED,
            "the official semantics; a NaN held by a masked anchor reaches the sum (0 * NaN)",
        ),
        PortEntry(
            "GHMC",
            "ghmc_class_index",
            "c",
            "module(pred, labels (N,), label_weight (N,)), C = background",
            READS_MASKED,
            "the official semantics, called with mmdetection's class indices",
            wiring="as mmdetection's heads call it",
        ),
        PortEntry(
            "GHMR",
            "ghmr",
            "r",
            "module(pred, target, label_weight), all (N, 4)",
            READS_MASKED,
            "the official semantics (literal ASL1, tot = sum of label weights, which cancels)",
        ),
    ],
    origin="open-mmlab/mmdetection",
    copies=COPIES,
)
