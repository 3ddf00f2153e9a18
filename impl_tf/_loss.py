"""What GHMCLoss and GHMRLoss share: hyper-parameters, the EMA variables, and the Keras loss
contract (masks, distribution scaling, saving)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ._checks import as_tensor, check_hyper, select, to_mask, FLOATING
from ._harmonize import harmonized_loss


def _valid_mask(sample_weight, keras_mask, pred: tf.Tensor) -> tf.Tensor | None:
    """The label weight and a Keras mask (spec.md 7) both mark invalid entries; None: all valid."""
    masks = [to_mask(name, m, pred) for name, m in (("sample_weight", sample_weight), ("keras mask", keras_mask))
             if m is not None]
    if len(masks) == 2:
        return select(masks[1], masks[0], False)  # "and", with the two shapes checked equal
    return masks[0] if masks else None


def scale_for_distribution(loss: tf.Tensor) -> tf.Tensor:
    """Keras sums the replicas' gradients; like every Keras loss, a mean divides by the number of
    replicas in sync so that the sum is the average."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * tf.constant(1.0 / replicas, loss.dtype)


class GHMLossBase(keras.losses.Loss):
    def __init__(self, *, bins: int, momentum: float, dialect: str, reduction: str, loss_weight: float,
                 name: str | None, sync_density: bool = False) -> None:
        check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
        super().__init__(name=name, reduction=reduction)
        self.bins, self.momentum, self.dialect = int(bins), float(momentum), dialect
        self.loss_weight = float(loss_weight)
        self.sync_density = bool(sync_density)
        # The EMA region state (S of Eq. 12, or the mmdet accumulator): non-trainable, owned by
        # the loss, float32, unused when momentum == 0. Under tf.distribute every replica may
        # assign it; all keep the first replica's value.
        only_first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.ema = tf.Variable(tf.zeros([self.bins], tf.float32), trainable=False, name="ghm_ema",
                               aggregation=only_first)
        self.ema_initialized = tf.Variable(False, trainable=False, name="ghm_ema_initialized", aggregation=only_first)

    def _prepare(self, y_true, y_pred, valid):
        """(per_entry_loss, per_entry_grad, ind, ok) for ``harmonized_loss``."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras order: ``y_true`` first. ``sample_weight`` is the label weight (a mask); a Keras
        mask on ``y_pred`` masks too. Under tf.distribute a "mean" is divided by the number of
        replicas, as Keras losses are."""
        keras_mask = getattr(y_pred, "_keras_mask", None)
        with tf.name_scope(self.name):
            pred = as_tensor("y_pred", y_pred, allowed=(FLOATING,))
            valid = _valid_mask(sample_weight, keras_mask, pred)
            loss, new_state, new_initialized = harmonized_loss(
                pred, *self._prepare(y_true, pred, valid), bins=self.bins, momentum=self.momentum,
                dialect=self.dialect, reduction=self.reduction, loss_weight=self.loss_weight, state=self.ema,
                initialized=self.ema_initialized, sync_density=self.sync_density)
            if self.momentum > 0.0:
                self._check_distribution()
                self.ema.assign(new_state)
                self.ema_initialized.assign(new_initialized)
            if self.reduction == "mean" and not self.sync_density:  # synced: N is already the global batch's
                loss = scale_for_distribution(loss)
            return loss

    def _check_distribution(self) -> None:
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync > 1 and not strategy.extended.variable_created_in_scope(self.ema):
            raise ValueError(f"{type(self).__name__} with momentum was created outside the scope of the "
                             f"{type(strategy).__name__} it is called under: its EMA state cannot be kept "
                             "consistent across replicas. Create the loss inside `strategy.scope()`.")

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self) -> dict:
        return {"name": self.name, "bins": self.bins, "momentum": self.momentum, "dialect": self.dialect,
                "reduction": self.reduction, "loss_weight": self.loss_weight, "sync_density": self.sync_density}

    # The EMA state travels with a saved .keras model (Keras calls these on saveable objects).
    def save_own_variables(self, store) -> None:
        store["ema"] = self.ema.numpy()
        store["ema_initialized"] = np.asarray(self.ema_initialized.numpy())

    def load_own_variables(self, store) -> None:
        """Restore the EMA state, or say why it cannot be: Keras retries a failed object with other
        (empty) stores and reports the last error, so the first reason is kept and raised again."""
        try:
            ema, initialized = np.asarray(store["ema"]), np.asarray(store["ema_initialized"])
        except KeyError:
            raise ValueError(getattr(self, "_load_failure", None) or
                             f"{type(self).__name__}: the file holds no EMA state for this loss (saved with "
                             f"another loss?); compile the model with the loss it was saved with") from None
        if ema.shape != (self.bins,):
            self._load_failure = (
                f"{type(self).__name__}(bins={self.bins}) cannot take an EMA state of {ema.size} regions (saved by a "
                f"loss with bins={ema.size}): the regions do not correspond. Build the loss with bins={ema.size} to "
                f"continue that EMA, or load with skip_mismatch=True to start this one afresh")
            raise ValueError(self._load_failure)
        self.ema.assign(ema)
        self.ema_initialized.assign(bool(initialized))
