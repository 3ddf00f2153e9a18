"""hjsad1994/BERT: a "GHM-C" for aspect-based sentiment analysis with BERT (its docstring cites
shuxinyin/NLP-Loss-Pytorch): regions by ``searchsorted`` on the edges, weights 1 / (count + 1e-7)
renormalized to sum to the batch size, the EMA ``acc_sum`` from zeros decaying every region,
label weights multiplied into the per-entry loss, the loss the mean over every entry.

Source: hjsad1994/BERT @ dc78076590c6e14e24200b9a7a216360504b8688, multi_label/losses/ghm_loss.py.
Download: ``git clone https://github.com/hjsad1994/BERT DIR/hjsad1994/BERT && git -C DIR/hjsad1994/BERT
checkout dc78076``.

Load-time patches: none. Wiring: ``GHM_Loss(bins, momentum, use_sigmoid=True)`` (the binary form)
called as ``loss(logits, targets, weights)`` with the label weights as ``weights``.
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("hjsad1994/BERT", "dc78076590c6e14e24200b9a7a216360504b8688", "multi_label/losses/ghm_loss.py")


def _module():
    return load(SOURCE, module_name="bert_absa_port.ghm_loss")


ghmc = LazyFactory(
    lambda: from_torch_module(lambda bins, momentum: _module().GHM_Loss(bins=bins, momentum=momentum, use_sigmoid=True))
)

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHM_Loss (use_sigmoid=True)",
            "ghmc",
            "c",
            "loss(logits, targets, weights), all (N, C)",
            "dialect: neither; fails: value, ema, ema_empty, saturated, scale, uniform, one_region, masked, "
            "weight_mask; notes: reads masked values (NaN/Inf there propagates)",
            "weights 1 / count renormalized to sum to the batch size, over every entry (masked ones too): not "
            "N / (count M); the label weight multiplies the loss instead of masking it",
        ),
    ],
)
