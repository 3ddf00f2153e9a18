"""sk413025/audio-angle-classification: "GHM" losses for a ranking task on audio. GHMCLoss counts
g = |sigmoid(x) - t| in ``bins`` regions and weights each entry by count^(-alpha) (``alpha = 0.75``,
an exponent, not a momentum), the loss the mean of the weighted BCE; GHMRLoss weights smooth L1
(not ASL1) by the counts of |tanh(x) - tanh(t)|. No EMA, no label weight.

Source: sk413025/audio-angle-classification @ 7e5add920bd8d3680297916eb322627663a6bf3e,
losses/ghm_loss.py. Download: ``git clone https://github.com/sk413025/audio-angle-classification
DIR/sk413025/audio-angle-classification && git -C DIR/sk413025/audio-angle-classification checkout
7e5add9``.

Load-time patches: none. Wiring: its default ``alpha`` (0.75); momentum is not supported (the kit's
momentum properties are not applicable).
"""

from ghm_conformance import from_torch_module

from ._load import Adapter, LazyFactory, PortEntry, Source, load

SOURCE = Source("sk413025/audio-angle-classification", "7e5add920bd8d3680297916eb322627663a6bf3e", "losses/ghm_loss.py")


def _module():
    return load(SOURCE, module_name="audio_angle_port.ghm_loss")


def _no_momentum(momentum):
    if momentum:
        raise NotImplementedError("no EMA: its alpha is an exponent on the counts")


def _ghmc(bins, momentum):
    _no_momentum(momentum)
    return _module().GHMCLoss(bins=bins)


def _ghmr(bins, momentum, mu):
    _no_momentum(momentum)
    return _module().GHMRLoss(mu=mu, bins=bins)


ghmc = LazyFactory(lambda: from_torch_module(_ghmc, label_weight=False))
ghmr = LazyFactory(lambda: from_torch_module(_ghmr, label_weight=False))

ADAPTER = Adapter(
    SOURCE,
    "torch",
    (),
    [
        PortEntry(
            "GHMCLoss",
            "ghmc",
            "c",
            "module(x, target), no label weight",
            "dialect: neither; fails: value, saturated, scale, uniform, one_region, duplication",
            "weights count^(-0.75), not N / (count M): the harmonizing is partial and the loss is not normalized",
        ),
        PortEntry(
            "GHMRLoss",
            "ghmr",
            "r",
            "module(pred, target), no label weight",
            "dialect: neither; fails: value, saturated, scale, uniform, one_region, duplication",
            "smooth L1 weighted by counts of |tanh(x) - tanh(t)|: neither ASL1 nor its gradient norm",
        ),
    ],
)
