"""lz06787/CCH-YOLOX: mmdetection 1.x's GHMC moved into a YOLOX tree (registry and ``.cuda()``
dropped), with one change that matters: ``forward(pred, target, *args)`` sets ``label_weight =
torch.ones_like(pred)`` and ignores the caller's, so masked entries are counted in N and in the
histogram and their loss is summed. Otherwise the official loop (tot = every entry, EMA from
zeros in the non-empty regions). Its GHMR is v1's unchanged.

Source: lz06787/CCH-YOLOX @ cdf2d29cb26c0e257088ace165a2570af001708b, yolox/models/ghm_loss.py (a
later commit removed the file). Download: ``git clone https://github.com/lz06787/CCH-YOLOX
DIR/lz06787/CCH-YOLOX && git -C DIR/lz06787/CCH-YOLOX checkout cdf2d29``.

Load-time patches: none. Wiring: ``GHMC(bins, momentum)`` called as ``loss(pred, target,
label_weight)``, all (N, C), the way mmdetection calls a GHMC (the weight lands in ``*args``).
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("lz06787/CCH-YOLOX", "cdf2d29cb26c0e257088ace165a2570af001708b", "yolox/models/ghm_loss.py")


def _module():
    return load(SOURCE, module_name="cch_yolox_port.ghm_loss")


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _module().GHMC(bins=bins, momentum=momentum)))

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMC",
            "ghmc",
            "c",
            "module(pred, target, label_weight), all (N, C): the weight ignored",
            "dialect: mmdet (without momentum only); fails: ema_empty, masked, all_masked; notes: reads masked "
            "values (NaN/Inf there propagates)",
            "mmdetection 1.x's GHMC with the label weight replaced by ones: masked entries count in N and in the "
            "histogram (a masked call moves the EMA), and their loss is summed",
        ),
    ],
)
