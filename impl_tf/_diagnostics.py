"""What one call of the loss did (spec.md section 13), returned with the loss.

Computed inside ``harmonized_loss`` (its ``diagnose`` hook) from the region index, counts, beta
and EMA state the loss has already formed; the one extra pass is a segment sum of
|dL_i/dpred_i| (g for GHM-C, gr for GHM-R) by region, which gives both gradient masses (beta
is constant per region). tf.function and XLA compatible; no host round trip.

    loss, d = ghm_c_loss(y_true, logits, weights, bins=30, diagnostics=True)
    d.nonempty, d.grad_share
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import tensorflow as tf

from ._checks import compute_dtype, is_class_index_target


def shares(mass: tf.Tensor) -> tf.Tensor:
    """mass_j / sum_k mass_k (0 everywhere when the sum is 0; NaN for a poisoned call)."""
    total = tf.reduce_sum(mass, axis=-1, keepdims=True)
    nonzero = tf.not_equal(total, 0)  # NaN != 0: a poisoned call stays NaN
    return tf.where(nonzero, mass / tf.where(nonzero, total, tf.ones_like(total)), tf.zeros_like(mass))


class Diagnostics(NamedTuple):
    """What one call did (spec.md 13), with M = bins and c = 1/N ("mean") or 1 ("sum", "none").

    counts: R_j, int64 (M,). valid: N, int64. nonempty: #{j : R_j > 0}, int64.
    density: the S_j the weights were formed from (R_j without momentum; the EMA / mmdet
        accumulator after the call's update with it).
    beta: beta_j, the weight of region j in this call, 0 for an empty region.
    grad_mass: sum over region j's valid entries of |d loss / d pred_i| (the loss of spec.md 5,
        without Keras's division by the replicas in sync).
    plain_mass: c * sum |dL_i / dpred_i|: the same for plain CE (GHM-C) or ASL1 (GHM-R).
    positive_fraction: GHM-C, the share of valid entries whose target is 1; GHM-R, NaN.
    A call with no valid entry: 0s (density: the state as it stands). A poisoned call: integer
    fields 0, float fields NaN. ``grad_share`` / ``plain_share``: the masses over their sums.
    With sync_density, counts, valid, nonempty, density and beta are the global batch's; the
    masses and the positive fraction this replica's."""

    counts: tf.Tensor
    valid: tf.Tensor
    nonempty: tf.Tensor
    density: tf.Tensor
    beta: tf.Tensor
    grad_mass: tf.Tensor
    plain_mass: tf.Tensor
    positive_fraction: tf.Tensor

    @property
    def grad_share(self) -> tf.Tensor:
        """Each region's share of the harmonized gradient's L1 mass (Figure 1, right panel)."""
        return shares(self.grad_mass)

    @property
    def plain_share(self) -> tf.Tensor:
        """Each region's share of the plain CE / ASL1 gradient's L1 mass."""
        return shares(self.plain_mass)


def positive_entries(y_true, pred: tf.Tensor) -> tf.Tensor:
    """Whether each entry's GHM-C target is 1: for class indices, the entry of each anchor's label."""
    target = tf.convert_to_tensor(y_true)
    if is_class_index_target(target, pred):
        return tf.equal(tf.one_hot(tf.cast(target, tf.int64), pred.shape[-1], dtype=tf.int8), 1)
    return tf.equal(tf.cast(target, compute_dtype(pred)), 1)


def collect(
    *,
    positive,
    ind,
    per_entry_grad,
    counts,
    local_counts,
    ok,
    beta,
    new_state,
    n_valid,
    bins: int,
    momentum: float,
    reduction: str,
    loss_weight: float,
) -> Diagnostics:
    """The hook ``harmonized_loss`` calls with its internals. ``positive``: per entry, whether its
    target is 1 (GHM-C), or None (GHM-R). ``ind`` puts masked entries in slot ``bins`` (their
    per_entry_grad, possibly NaN, lands there and is dropped). ``counts`` / ``beta`` are global
    under sync_density, ``local_counts`` this replica's; ``new_state``: the EMA after the call."""
    dtype = beta.dtype
    flat = tf.reshape(ind, [-1])
    norms = tf.reshape(tf.abs(per_entry_grad), [-1])  # |dL_i/dx_i|: g (GHM-C) or gr (GHM-R)
    plain = tf.math.unsorted_segment_sum(norms, flat, bins + 1)[:bins]  # + the masked entries' slot
    if reduction == "mean":
        plain = plain / tf.cast(tf.maximum(n_valid, 1), dtype)
    r = counts[:bins]
    density = tf.cast(r, dtype) if momentum == 0.0 else tf.cast(new_state, dtype)
    nan = tf.constant(float("nan"), dtype)

    def unless_poisoned(x):
        return tf.where(ok, x, tf.fill(tf.shape(x), nan))

    if positive is None:
        fraction = nan
    else:
        positives = tf.math.count_nonzero(positive & (ind < bins), dtype=tf.int64)
        local_n = tf.maximum(tf.reduce_sum(local_counts[:bins]), 1)
        fraction = unless_poisoned(tf.cast(positives, dtype) / tf.cast(local_n, dtype))
    counted = tf.where(ok, r, tf.zeros_like(r))
    return Diagnostics(
        counts=counted,
        valid=tf.reduce_sum(counted),
        nonempty=tf.math.count_nonzero(counted),
        density=unless_poisoned(density),
        beta=beta[:bins],
        grad_mass=unless_poisoned(plain * beta[:bins] * abs(loss_weight)),
        plain_mass=unless_poisoned(plain),
        positive_fraction=fraction,
    )


def collector(kind: str, y_true=None, pred: tf.Tensor | None = None):
    """``harmonized_loss``'s ``diagnose`` argument for a GHM-C ("c", with its y_true and pred) or
    GHM-R ("r") call."""
    return functools.partial(collect, positive=positive_entries(y_true, pred) if kind == "c" else None)
