"""The harmonizing weight beta in TensorFlow: one segment-sum histogram with exact int64 counts
over a fixed number of regions; O(N) memory, no host round trip, XLA-compilable
(``tf.histogram_fixed_width`` has no XLA kernel). spec.md sections 2.3 and 4."""

from __future__ import annotations

import tensorflow as tf


def region_index(g: tf.Tensor, valid: tf.Tensor, bins: int) -> tf.Tensor:
    """min(floor(g * M), M - 1) for valid entries; masked ones go to a spare region ``bins``."""
    g = tf.clip_by_value(tf.where(tf.math.is_nan(g), tf.zeros_like(g), g), 0.0, 1.0)
    ind = tf.minimum(tf.cast(tf.floor(g * bins), tf.int32), bins - 1)
    return tf.where(valid, ind, bins)


def region_counts(ind: tf.Tensor, bins: int) -> tf.Tensor:
    """R_j as exact int64 counts (length bins + 1: the last slot collects masked entries)."""
    flat = tf.reshape(ind, [-1])
    return tf.math.unsorted_segment_sum(tf.ones_like(flat, dtype=tf.int64), flat, bins + 1)


def harmonize(g, valid, ok, *, bins: int, momentum: float, dialect: str, state=None, initialized=None):
    """(beta, new_state, new_initialized, n_valid): beta = 0 where masked, NaN on valid entries
    when ``ok`` is False. The EMA ``state``/``initialized`` are needed only when momentum > 0 and
    only change when the call has a valid entry and ``ok``; without momentum they are returned
    as given."""
    dtype = g.dtype
    ind = region_index(g, valid, bins)
    r = region_counts(ind, bins)[:bins]
    n_valid = tf.reduce_sum(r)
    rf = tf.cast(r, dtype)
    if momentum == 0.0:
        s = rf
    elif dialect == "paper":  # Eq. (12) on every region; S^(0) := R^(1)
        s = tf.where(initialized, momentum * tf.cast(state, dtype) + (1.0 - momentum) * rf, rf)
    else:  # accumulator from zeros, updated only where R_j > 0
        prev = tf.cast(state, dtype)
        s = tf.where(r > 0, momentum * prev + (1.0 - momentum) * rf, prev)
    if dialect == "paper":
        n_regions = tf.constant(bins, dtype)
    else:
        n_regions = tf.cast(tf.maximum(tf.math.count_nonzero(r, dtype=tf.int64), 1), dtype)
    denom = tf.concat([s * n_regions, tf.ones([1], dtype)], 0)  # the spare region: never 0
    beta = tf.where(valid, tf.cast(n_valid, dtype) / tf.gather(denom, ind), tf.zeros([], dtype))
    beta = tf.where(valid & tf.logical_not(ok), tf.constant(float("nan"), dtype), beta)
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    update = ok & (n_valid > 0)
    new_state = tf.where(update, tf.cast(s, state.dtype), state)
    return beta, new_state, tf.logical_or(initialized, update), n_valid


def ghm_reduce(per_entry_loss, g, valid, ok, *, bins, momentum, dialect, reduction, loss_weight, state=None,
               initialized=None):
    """loss_weight * reduction(beta * L), beta a constant for backprop (the one stop_gradient).

    ``per_entry_loss`` must be finite on masked entries (the callers zero their inputs), so
    ``beta = 0`` masks them. Returns (loss, new_state, new_initialized)."""
    beta, new_state, new_initialized, n_valid = harmonize(
        g, valid, ok, bins=bins, momentum=momentum, dialect=dialect, state=state, initialized=initialized)
    dtype = per_entry_loss.dtype
    per_entry = tf.stop_gradient(beta) * per_entry_loss * tf.constant(loss_weight, dtype)
    if reduction == "none":
        loss = per_entry
    elif reduction == "sum":
        loss = tf.reduce_sum(per_entry)
    else:
        loss = tf.reduce_sum(per_entry) / tf.cast(tf.maximum(n_valid, 1), dtype)
    return loss, new_state, new_initialized
