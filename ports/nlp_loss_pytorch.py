"""shuxinyin/NLP-Loss-Pytorch: DHPO's GHM loss copied into an NLP loss collection (text
classification), default alpha 0.5; the same code, so the same verdict (a census of the ports
people find, copies included).

Source: shuxinyin/NLP-Loss-Pytorch @ ed42aa29014735dc937d5f34bf690e8ed596e735,
unbalanced_loss/GHM_loss.py. Download: ``git clone https://github.com/shuxinyin/NLP-Loss-Pytorch
DIR/shuxinyin/NLP-Loss-Pytorch && git -C DIR/shuxinyin/NLP-Loss-Pytorch checkout ed42aa2``.

Load-time patches: none. Wiring: ``alpha`` is the kit's momentum.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load
from .dhpo import ADAPTER as DHPO

SOURCE = Source("shuxinyin/NLP-Loss-Pytorch", "ed42aa29014735dc937d5f34bf690e8ed596e735", "unbalanced_loss/GHM_loss.py")


def _module():
    return load(SOURCE, module_name="nlp_loss_port.ghm_loss")


ghmc = LazyFactory(lambda: from_torch_module(lambda bins, momentum: _module().GHMC_Loss(bins, momentum),
                                             label_weight=False))
ghmr = LazyFactory(lambda: from_torch_module(lambda bins, momentum, mu: _module().GHMR_Loss(bins, momentum, mu),
                                             label_weight=False))

ADAPTER = Adapter(SOURCE, "torch", (), [PortEntry(e.name, e.attr, e.loss, e.call, e.reading, e.reason)
                                         for e in DHPO.entries])
