"""shuxinyin/NLP-Loss-Pytorch: DHPO's GHM loss copied into an NLP loss collection (text
classification), default alpha 0.5; the same code, so the same verdict (a census of the ports
people find, copies included).

Source: shuxinyin/NLP-Loss-Pytorch @ ed42aa29014735dc937d5f34bf690e8ed596e735,
unbalanced_loss/GHM_loss.py. Download: ``git clone https://github.com/shuxinyin/NLP-Loss-Pytorch
DIR/shuxinyin/NLP-Loss-Pytorch && git -C DIR/shuxinyin/NLP-Loss-Pytorch checkout ed42aa2``.

Load-time patches: none. Wiring: ``alpha`` is the kit's momentum.
"""

from ._load import Adapter, PortEntry, Source
from .dhpo import ADAPTER as DHPO
from .dhpo import factories

SOURCE = Source("shuxinyin/NLP-Loss-Pytorch", "ed42aa29014735dc937d5f34bf690e8ed596e735", "unbalanced_loss/GHM_loss.py")

ghmc, ghmr = factories(SOURCE, "nlp_loss_port.ghm_loss")

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [PortEntry(e.name, e.attr, e.loss, e.call, e.reading, e.reason) for e in DHPO.entries],
    origin="DHPO/GHM_Loss.pytorch",
)
