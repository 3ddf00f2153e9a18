"""GHMCLoss and GHMRLoss: the Keras 3 losses, on the TensorFlow, JAX and PyTorch backends."""

from __future__ import annotations

import keras

import ghm_args

from ._loss import GHMLossBase


@keras.saving.register_keras_serializable(package="ghm")
class GHMCLoss(GHMLossBase):
    """GHM-C loss (Li et al., AAAI 2019, Eqs. 1-13) as a Keras loss: sigmoid cross entropy
    reweighted by the inverse density of ``g = |sigmoid(y_pred) - y_true|``.

    ``loss = loss_weight * (1/N) * sum_{i valid} beta_i * CE(y_pred_i, y_true_i)`` ("mean").

    Dialects (spec.md section 4): ``"paper"``, ``beta_i = N / (S_ind(i) * bins)`` with S the
    region counts or their EMA (Eq. 12) started from the first counts; ``"mmdet"`` (the official
    code), ``beta_i = N / (A_ind(i) * n)`` with n the non-empty regions and an accumulator from
    zeros updated only where a region is non-empty.

    ``sample_weight`` is the label weight and acts only as a mask (weight > 0: an example; 0,
    negative or NaN: out of N and the histogram, gradient 0), shaped like ``y_pred`` or like
    ``y_pred.shape[:-1]`` (per sample); a Keras mask on ``y_pred`` masks too. ``y_true``: shaped
    like ``y_pred`` (floats in [0, 1], bool, or integer 0/1), or integer class indices of shape
    ``y_pred.shape[:-1]`` (index C = background; needs C >= 2). beta is a constant for backprop;
    the gradient is formed with the loss in float32 and multiplied by the upstream gradient (a
    loss scale) there. A NaN/Inf or out-of-range value in a valid entry gives a NaN loss and
    leaves the EMA state as it was. Statistics are float32 (float64 for float64 ``y_pred``).

    Backends: the same class on TensorFlow (``impl_tf``'s kernels; tf.function and XLA;
    tf.distribute with the per-replica scaling of Keras losses, ``sync_density``), JAX
    (``impl_jax``; ``jit_compile``) and PyTorch (``impl_torch``). EMA state: ``loss.state``, a
    Keras metric holding the float32 variables ``ema`` and ``initialized``, updated by every call
    (``model.evaluate`` too) and saved in ``.keras`` files; on the JAX backend compile with
    ``metrics=[loss.state]`` so that Keras carries it through its compiled step (without it, a
    clear error).

    Args:
        bins: number of unit regions M. Default: 30.
        momentum: EMA momentum alpha in [0, 1); 0 disables the EMA. Default: 0.0.
        dialect: ``"paper"`` or ``"mmdet"``. Default: ``"paper"``.
        reduction: ``"mean"`` (1/N), ``"sum"`` or ``"none"`` (per entry beta * CE). Default: ``"mean"``.
        loss_weight: multiplier of the loss. Default: 1.0.
        sync_density: TensorFlow backend only: sum the region counts and N over the replicas in
            sync (spec.md section 11). Default: False.
        diagnostics: record what each call did (spec.md 13) in ``loss.diagnostics``, a Keras metric
            (``GHMDiagnostics``): compile with ``metrics=[loss.diagnostics]`` and ``fit``'s logs show
            the occupied regions, N, the positive fraction and gradient shares;
            ``loss.last_diagnostics()`` gives the per-region values, ``DiagnosticsCallback`` records
            them per batch. Default: False.
        name: the loss's name. Default: ``"ghm_c_loss"``.
    """

    kind = "c"

    def __init__(
        self,
        bins: int = 30,
        momentum: float = 0.0,
        dialect: str = "paper",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        sync_density: bool = False,
        name: str | None = "ghm_c_loss",
        diagnostics: bool = False,
    ) -> None:
        super().__init__(
            bins=bins,
            momentum=momentum,
            dialect=dialect,
            reduction=reduction,
            loss_weight=loss_weight,
            name=name,
            sync_density=sync_density,
            diagnostics=diagnostics,
        )


@keras.saving.register_keras_serializable(package="ghm")
class GHMRLoss(GHMLossBase):
    """GHM-R loss (Li et al., AAAI 2019, Eqs. 17-19) as a Keras loss: Authentic Smooth L1
    ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` of ``d = y_pred - y_true``, reweighted by the inverse
    density of ``gr = |d| / sqrt(d^2 + mu^2)``; evaluated without overflow for every finite
    residual. Everything else as :class:`GHMCLoss`.

    Args:
        mu: the ASL1 parameter, in [1e-30, 1e30]. Default: 0.02.
        bins: number of unit regions M. Default: 10.
        momentum, dialect, reduction, loss_weight, sync_density, diagnostics: as :class:`GHMCLoss`.
            Defaults: 0.0, "paper", "mean", 1.0 (the released configs use 10), False, False.
        name: the loss's name. Default: ``"ghm_r_loss"``.
    """

    kind = "r"

    def __init__(
        self,
        mu: float = 0.02,
        bins: int = 10,
        momentum: float = 0.0,
        dialect: str = "paper",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        sync_density: bool = False,
        name: str | None = "ghm_r_loss",
        diagnostics: bool = False,
    ) -> None:
        ghm_args.check_mu(mu)
        super().__init__(
            bins=bins,
            momentum=momentum,
            dialect=dialect,
            reduction=reduction,
            loss_weight=loss_weight,
            name=name,
            sync_density=sync_density,
            diagnostics=diagnostics,
        )
        self.mu = float(mu)

    def hyper(self) -> dict:
        return {**super().hyper(), "mu": self.mu}

    def get_config(self) -> dict:
        return {**super().get_config(), "mu": self.mu}
