"""What GHMCLoss and GHMRLoss share: hyper-parameters, the EMA variables, Keras plumbing."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ._checks import check_hyper
from ._harmonize import ghm_reduce


class GHMLossBase(keras.losses.Loss):
    def __init__(self, *, bins: int, momentum: float, dialect: str, reduction: str, loss_weight: float,
                 name: str | None) -> None:
        check_hyper(bins=bins, momentum=momentum, dialect=dialect, reduction=reduction, loss_weight=loss_weight)
        super().__init__(name=name, reduction=reduction)
        self.bins, self.momentum, self.dialect = int(bins), float(momentum), dialect
        self.loss_weight = float(loss_weight)
        # The EMA region state (S of Eq. 12, or the mmdet accumulator): non-trainable, owned by
        # the loss, unused when momentum == 0.
        self.ema = tf.Variable(tf.zeros([self.bins], tf.float32), trainable=False, name="ghm_ema")
        self.ema_initialized = tf.Variable(False, trainable=False, name="ghm_ema_initialized")

    def _prepare(self, y_true, y_pred, sample_weight):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras order: ``y_true`` first. ``sample_weight`` is the label weight (a mask)."""
        with tf.name_scope(self.name):
            per_entry, g, valid, ok = self._prepare(y_true, y_pred, sample_weight)
            loss, new_state, new_initialized = ghm_reduce(
                per_entry, g, valid, ok, bins=self.bins, momentum=self.momentum, dialect=self.dialect,
                reduction=self.reduction, loss_weight=self.loss_weight, state=self.ema,
                initialized=self.ema_initialized)
            if self.momentum > 0.0:
                self.ema.assign(new_state)
                self.ema_initialized.assign(new_initialized)
            return loss

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self) -> dict:
        return {"name": self.name, "bins": self.bins, "momentum": self.momentum, "dialect": self.dialect,
                "reduction": self.reduction, "loss_weight": self.loss_weight}

    # The EMA state travels with a saved .keras model (Keras calls these on saveable objects).
    def save_own_variables(self, store) -> None:
        store["ema"] = self.ema.numpy()
        store["ema_initialized"] = np.asarray(self.ema_initialized.numpy())

    def load_own_variables(self, store) -> None:
        self.ema.assign(np.asarray(store["ema"]))
        self.ema_initialized.assign(bool(np.asarray(store["ema_initialized"])))
