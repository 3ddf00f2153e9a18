"""Four zoo ports as one census adapter: a row each, with the verdict the zoo expects."""

import zoo
from ports._load import Adapter, LazyFactory, PortEntry, Source
from zoo import MasksFirst, port

SOURCE = Source("zoo/ports", "0" * 40, "zoo.py")
READS_MASKED = "notes: reads masked values (NaN/Inf there propagates)"

official_style = LazyFactory(lambda: zoo.official_style)
unguarded_n = LazyFactory(lambda: zoo.unguarded_n)
edge_closed = LazyFactory(lambda: zoo.edge_closed)
ghm_r = LazyFactory(lambda: port(MasksFirst, loss="r"))

ADAPTER = Adapter(
    SOURCE,
    "numpy",
    ("none",),
    copies=("zoo/copy",),
    entries=[
        PortEntry(
            "official style",
            "official_style",
            "c",
            "step(pred, target, label_weight)",
            f"conforms: mmdet; {READS_MASKED}",
            "the official semantics",
        ),
        PortEntry(
            "unguarded n",
            "unguarded_n",
            "c",
            "step(pred, target, label_weight)",
            f"dialect: mmdet; fails: all_masked; {READS_MASKED}",
            "NaN when every entry is masked",
        ),
        PortEntry(
            "edge closed",
            "edge_closed",
            "c",
            "step(pred, target, label_weight)",
            f"dialect: mmdet except g exactly on a region edge; fails: value, ema, ema_empty, scale; {READS_MASKED}",
            "lo <= g <= hi: an entry on an edge is counted twice",
        ),
        PortEntry("GHM-R masks first", "ghm_r", "r", "step(pred, target, label_weight)", "conforms: mmdet", ""),
    ],
)
