"""Duarte-Almeida/BenchmarkingImbalancedLearningTechniques: a "GradientHarmonized" custom
objective for LightGBM (tabular fraud detection), in NumPy: g = |sigmoid(score) - y|, regions
``floor(g / eps)`` with eps = 1/M (M regions, a g of exactly 1 in a region of its own), and the
booster's gradient ``weights * (p - y)`` with weights (eps / count)^(1/beta) ("polynomial", beta
= 5 by default): a partial harmonizing and no N / M normalisation; no EMA, no label weight; the
hessian returned is a constant 1e-10.

Source: Duarte-Almeida/BenchmarkingImbalancedLearningTechniques @
dee8860448bec94e2b67d059ab870a18d9fc0412, losses/GradientHarmonizedLoss.py. Download: ``git clone
https://github.com/Duarte-Almeida/BenchmarkingImbalancedLearningTechniques
DIR/Duarte-Almeida/BenchmarkingImbalancedLearningTechniques && git -C
DIR/Duarte-Almeida/BenchmarkingImbalancedLearningTechniques checkout dee8860``.

Load-time patches: ``from skopt import space`` and ``import sklearn.metrics`` get stubs
(scikit-optimize, scikit-learn; unused by the loss).
Wiring, as its LightGBM model calls ``obj(y, scores)``: the weights it multiplies the gradient by
(``weights(|grad(y, expit(scores))|)``, the calls ``obj`` makes) with M = the kit's bins and its
default beta, the entries passed as one vector (as LightGBM passes its samples); the kit forms
(1/N) sum beta_i BCE_i from them. Momentum is not supported.
"""

import numpy as np

from ghm_conformance import from_weights

from ._load import Adapter, LazyFactory, PortEntry, Source, load, stub

SOURCE = Source(
    "Duarte-Almeida/BenchmarkingImbalancedLearningTechniques",
    "dee8860448bec94e2b67d059ab870a18d9fc0412",
    "losses/GradientHarmonizedLoss.py",
)
PATCHES = (
    "`from skopt import space`: a stub (scikit-optimize, unused by the loss)",
    "`import sklearn.metrics`: a stub (scikit-learn, unused by the loss)",
)


def _module():
    return load(
        SOURCE,
        module_name="imbalanced_lgbm_port.GradientHarmonizedLoss",
        stubs={
            "skopt": stub("skopt", space=None),
            "sklearn": stub("sklearn"),
            "sklearn.metrics": stub("sklearn.metrics"),
        },
    )


class _ObjectiveWeights:
    def __init__(self, bins):
        from scipy import special

        self.expit, self.loss = special.expit, _module().GradientHarmonizedLoss(M=bins)

    def __call__(self, pred, target):
        scores, y = np.asarray(pred, np.float64).ravel(), np.asarray(target, np.float64).ravel()
        grad = self.loss.grad(y, self.expit(scores))
        return self.loss.weights(np.abs(grad)).reshape(np.shape(pred))


def _factory():
    def weights(bins, momentum):
        if momentum:
            raise NotImplementedError("no EMA")
        return _ObjectiveWeights(bins)

    with_mask = from_weights(
        lambda bins, momentum: (lambda w: lambda pred, target, _lw: w(pred, target))(weights(bins, momentum)), "c"
    )

    def make_port(*, bins, momentum, **hyper):
        step = with_mask(bins=bins, momentum=momentum, **hyper)
        return lambda pred, target: step(pred, target, np.ones_like(pred))

    make_port.label_weight = False
    make_port.framework = None
    return make_port


ghmc = LazyFactory(_factory)

ADAPTER = Adapter(
    SOURCE,
    "numpy (LightGBM objective)",
    PATCHES,
    [
        PortEntry(
            "GradientHarmonizedLoss.obj",
            "ghmc",
            "c",
            "obj(y, scores): the weights on the gradient",
            "dialect: neither; fails: value, saturated, scale, uniform, one_region, duplication",
            "weights (1 / (M count))^(1/5), not N / (count M): a partial harmonizing without the normalisation; "
            "a g of exactly 1 gets a region of its own",
            wiring="as its LightGBM objective weighs the gradient",
        ),
    ],
)
