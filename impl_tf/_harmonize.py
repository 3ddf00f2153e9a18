"""The harmonizing weight beta in TensorFlow (spec.md sections 2.3 and 4), in pieces named after
the reference functions they compute (``reference.equations`` / ``reference.ghm``):

    region_index    ind(g) = min(floor(g M), M - 1)                  unit regions, Sec. 3.2
    region_counts   R_j, exact int64 counts                          Eq. (9)
    ema             S_j = alpha S_j + (1 - alpha) R_j                 Eq. (12)
    harmonize       beta_j = N / (S_j M) ("paper") or N / (A_j n)     Eqs. (10), (13); mmdet dialect

beta depends on the entry only through its region, so ``harmonize`` returns one value per
region (bins + 1 values: the spare last slot holds the masked entries, weight 0), gathered per
entry by ``harmonized_loss``. O(N) memory, no host round trip, XLA-compilable.
"""

from __future__ import annotations

import tensorflow as tf

from ._checks import in_xla


def region_index(g: tf.Tensor, bins: int, valid: tf.Tensor | None = None) -> tf.Tensor:
    """ind(g) = min(floor(g * M), M - 1), with g = 1 in the last region (spec.md 2.3). ``g`` is a
    gradient norm (>= 0); NaN or Inf (only in a poisoned batch) lands in the last region, never
    out of range. Entries not ``valid`` go to the spare region M."""
    g = tf.where(g <= 1.0, g, tf.ones_like(g))  # NaN <= 1 is False
    ind = tf.minimum(tf.cast(g * bins, tf.int32), bins - 1)  # truncation == floor for g >= 0
    if valid is not None:
        ind = tf.where(valid, ind, bins)
    return ind


def poison_in_counts() -> bool:
    """Whether the batch's validity is read from the histogram's poison slot M + 1 (under XLA)
    rather than from a separate reduction over the inputs (eager, tf.function): XLA computes the
    per-entry check in the loop that forms the region index, and a pass over the inputs and a
    boolean intermediate go; outside XLA each op is a pass of its own anyway."""
    return in_xla()


def region_counts(ind: tf.Tensor, bins: int, bad: tf.Tensor | None = None) -> tf.Tensor:
    """R_j as exact int64 counts, length bins + 1 (the last slot counts the masked entries), or
    bins + 2 with a per-entry flag ``bad`` (the last slot counts the entries flagged: valid ones
    that poison the batch; ``poison_in_counts``).
    Outside XLA, DenseBincount with int32 counts (10x faster there than a segment sum; int32 is
    the integer type it has a GPU kernel for, so it stays on the device), widened to int64 and
    summed over chunks of 2^30 entries, so exact at any size; under XLA, a segment sum of packed
    indices (``_packed_segment_counts``: DenseBincount's XLA lowering is a scatter too, after
    writing a ones array as long as the input)."""
    if bad is not None:  # the slot M + 1; only the histogram sees it
        ind = tf.where(bad, bins + 1, ind)
    flat = tf.reshape(ind, [-1])
    slots = bins + 1 + int(bad is not None)
    if in_xla():
        return _packed_segment_counts(flat, slots)
    n = flat.shape[0]
    if n is not None and n <= _BINCOUNT_CHUNK:
        return tf.cast(_bincount_int32(flat, slots), tf.int64)
    return _chunked_counts(flat, slots)


_BINCOUNT_CHUNK = 1 << 30  # entries per int32 histogram: exact, with room to spare below 2^31


def _bincount_int32(flat: tf.Tensor, slots: int) -> tf.Tensor:
    return tf.raw_ops.DenseBincount(
        input=flat, size=tf.constant(slots, tf.int32), weights=tf.constant([], tf.int32), binary_output=False
    )


def _chunked_counts(flat: tf.Tensor, slots: int) -> tf.Tensor:
    """int64 counts of an input of any (or unknown) size: int32 histograms of 2^30-entry slices."""
    size = tf.size(flat, out_type=tf.int64)
    chunks = (size + _BINCOUNT_CHUNK - 1) // _BINCOUNT_CHUNK

    def body(k, total):
        part = flat[k * _BINCOUNT_CHUNK : (k + 1) * _BINCOUNT_CHUNK]
        return k + 1, total + tf.cast(_bincount_int32(part, slots), tf.int64)

    _, total = tf.while_loop(lambda k, _: k < chunks, body, (tf.constant(0, tf.int64), tf.zeros([slots], tf.int64)))
    return total


_PACKED_SLOTS = 1 << 15  # the joint histogram stays in the L1/L2 cache (128 KB of int32)


def _packed_segment_counts(flat: tf.Tensor, slots: int) -> tf.Tensor:
    """Exact int64 counts of ``flat`` (values in [0, slots)) for XLA, whose CPU scatter is a
    serial loop costing a few ns per element: k indices are packed into one code
    (i_1 S^(k-1) + ... + i_k with the alphabet S = slots + 1, the extra letter padding the tail to
    a multiple of k), the codes are counted once (N / k scatter steps instead of N), and the
    counts of each position's letter are the sums of that joint histogram over the other
    positions. k is the largest (at most 4) with S^k <= 2^15. With a static size the last
    N mod k entries are counted on their own (the codes then read the region indices where they
    are computed: no padded copy of them is written); with an unknown size the tail is padded
    with the extra letter S (alphabet S + 1)."""
    n = flat.shape[0]
    alphabet = slots if n is not None else slots + 1
    k = max(j for j in (1, 2, 3, 4) if j == 1 or alphabet**j <= _PACKED_SLOTS)
    # XLA writes the ones out in full: int32 halves that, and is exact below 2^31 entries per call
    # (the static size decides; an unknown one keeps int64)
    count_dtype = tf.int32 if n is not None and n < 2**31 else tf.int64
    if k == 1 or (n is not None and n < k):
        ones = tf.ones_like(flat, dtype=count_dtype)
        return tf.cast(tf.math.unsorted_segment_sum(ones, flat, slots), tf.int64)
    if n is not None:
        body = n - n % k
        letters, tail = tf.reshape(flat[:body], [-1, k]), flat[body:]
    else:
        pad = tf.math.floormod(-tf.size(flat), k)
        letters, tail = tf.reshape(tf.pad(flat, [[0, pad]], constant_values=slots), [-1, k]), None
    code = letters[:, 0]
    for j in range(1, k):
        code = code * alphabet + letters[:, j]
    joint = tf.math.unsorted_segment_sum(tf.ones_like(code, dtype=count_dtype), code, alphabet**k)
    joint = tf.reshape(joint, [alphabet] * k)
    counts = tf.add_n([tf.reduce_sum(joint, axis=[a for a in range(k) if a != j]) for j in range(k)])[:slots]
    if tail is not None and n % k:
        counts += tf.math.unsorted_segment_sum(tf.ones_like(tail, dtype=count_dtype), tail, slots)
    return tf.cast(counts, tf.int64)


def _accurate_sum(values: tf.Tensor) -> tf.Tensor:
    """A sum that stays accurate at 2^24 terms: each row (the last axis) in the values' dtype, then
    the row sums in float64 (XLA's float32 reduction is 1.7e-4 off at 2^24 terms; a float64
    cast of every term would be written out in full)."""
    rows = tf.reduce_sum(values, axis=-1) if values.shape.rank and values.shape.rank > 1 else values
    return tf.cast(tf.reduce_sum(tf.cast(rows, tf.float64)), values.dtype)


def ema(s_prev: tf.Tensor, r: tf.Tensor, alpha: float) -> tf.Tensor:
    """Eq. (12): S^(t) = alpha S^(t-1) + (1 - alpha) R^(t)."""
    return alpha * s_prev + (1.0 - alpha) * r


def harmonize(
    counts: tf.Tensor,
    ok: tf.Tensor,
    *,
    bins: int,
    momentum: float,
    dialect: str,
    dtype: tf.DType,
    state=None,
    initialized=None,
):
    """Per-region beta from the counts of ``region_counts`` (spec.md section 4).

    Returns (beta, new_state, new_initialized, n_valid): ``beta`` has bins + 1 values, the last
    (masked entries) 0, and NaN for every region when ``ok`` is False (a poisoned batch). The
    EMA ``state`` / ``initialized`` are needed only when momentum > 0, and change only when the
    call has a valid entry and ``ok``; otherwise they are returned as given.

    "paper": beta_j = N / (S_j M), S = R, or the EMA of Eq. (12) with S^(0) := R^(1).
    "mmdet": beta_j = N / (A_j n), n = #non-empty regions, A = R, or an accumulator from zeros
             updated by Eq. (12) only where R_j > 0."""
    r = counts[:bins]
    n_valid = tf.reduce_sum(r)
    rf = tf.cast(r, dtype)
    occupied = r > 0
    if momentum == 0.0:
        s = rf
    elif dialect == "paper":
        s = tf.where(initialized, ema(tf.cast(state, dtype), rf, momentum), rf)
    else:
        prev = tf.cast(state, dtype)
        s = tf.where(occupied, ema(prev, rf, momentum), prev)
    if dialect == "paper":
        n_regions = tf.constant(bins, dtype)
    else:
        n_regions = tf.cast(tf.maximum(tf.math.count_nonzero(r, dtype=tf.int64), 1), dtype)
    safe = tf.where(occupied, s * n_regions, tf.ones_like(s))  # empty regions are never read
    beta = tf.where(occupied, tf.cast(n_valid, dtype) / safe, tf.zeros_like(s))
    beta = tf.where(ok, beta, tf.fill(tf.shape(beta), tf.constant(float("nan"), dtype)))
    beta = tf.concat([beta, tf.zeros([1], dtype)], 0)
    if momentum == 0.0:
        return beta, state, initialized, n_valid
    update = ok & (n_valid > 0)
    return beta, tf.where(update, tf.cast(s, state.dtype), state), tf.logical_or(initialized, update), n_valid


SECOND_ORDER_ERROR = (
    "the GHM losses are differentiable once: their gradient is formed with the loss (beta is a "
    "constant for backprop, spec.md 5), so it cannot be differentiated again (a gradient penalty "
    "or a Hessian-vector product through the loss)"
)


def _differentiable_once(inputs: tuple[tf.Tensor, ...], value: tf.Tensor) -> tf.Tensor:
    """``value`` (a gradient of the loss), as a function of every input of the loss (``pred``, and
    a float ``target``) whose derivative raises: an outer tape would otherwise see no dependence
    on an input and return a silent None (d/dpred of d loss/d target, say)."""

    @tf.custom_gradient
    def guard(*unused):
        def backward(upstream):
            raise NotImplementedError(SECOND_ORDER_ERROR)

        return tf.identity(value), backward

    return guard(*inputs)


def _with_gradient(pred: tf.Tensor, loss: tf.Tensor, grad: tf.Tensor, target_terms=None) -> tf.Tensor:
    """``loss`` as a function of ``pred`` whose gradient is ``grad`` (computed with it): backward
    is one multiply (beta is a constant for backprop, spec.md section 5). ``target_terms``
    (target, its weighted gradient) attach a float target too. The upstream gradient (a loss
    scale included) multiplies in the gradients' compute dtype (float32), and only the product is
    cast to the input's dtype: rounding first would flush float16 gradients of 1e-7 to 0, and
    casting the upstream first would overflow a scale of 2^16 (spec.md 8)."""

    def times(upstream, x, g, inputs):
        return _differentiable_once(inputs, tf.cast(tf.cast(upstream, g.dtype) * g, x.dtype))

    if target_terms is None:

        @tf.custom_gradient
        def attach(p):
            return tf.identity(loss), lambda upstream: times(upstream, p, grad, (p,))

        return attach(pred)
    target, target_grad = target_terms

    @tf.custom_gradient
    def attach_both(p, t):
        return tf.identity(loss), lambda upstream: (
            times(upstream, p, grad, (p, t)),
            times(upstream, t, target_grad, (p, t)),
        )

    return attach_both(pred, target)


def sum_counts(counts: tf.Tensor, ok: tf.Tensor, bins: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The global batch's counts over the replicas in sync (one all_reduce of bins + 1 int64), and
    whether every replica's batch is ok: the spare slot (the local masked count, not needed
    globally) carries "this replica is not ok" (spec.md section 11)."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: the loss sees the whole (global) batch already
        return counts, ok
    packed = tf.concat([counts[:bins], tf.reshape(tf.cast(tf.logical_not(ok), tf.int64), [1])], 0)
    summed = context.all_reduce(tf.distribute.ReduceOp.SUM, packed)
    return summed, tf.equal(summed[bins], 0)


def _materialized(table: tf.Tensor) -> tf.Tensor:
    """``table`` computed once, before the per-entry gather reads it. Under XLA the table's
    computation (bins + 1 values from the counts) would otherwise be fused into the gather's loop
    and recomputed for every entry: a division and the count sums' loads per entry."""
    if not in_xla():
        return table
    # an identity scatter: XLA does not fuse a scatter into its consumers (an optimization
    # barrier would not do: XLA's CPU pipeline removes barriers before fusion)
    return tf.math.unsorted_segment_sum(table, tf.range(tf.shape(table)[0]), tf.shape(table)[0])


def harmonized_loss(
    pred,
    per_entry_loss,
    per_entry_grad,
    ind,
    ok,
    valid=None,
    target_terms=None,
    bad=None,
    *,
    bins,
    momentum,
    dialect,
    reduction,
    loss_weight,
    state=None,
    initialized=None,
    sync_density: bool = False,
    diagnose=None,
):
    """Eqs. (11) / (19): loss_weight * reduction(beta_i * L_i), with d loss / d pred attached.

    ``per_entry_loss`` / ``per_entry_grad`` are L_i and dL_i/dpred_i (computed without gradient
    tracking); ``ind`` puts the masked entries in the spare region (weight 0), and their
    products are set to 0 where ``valid`` is False, whatever they hold (NaN, Inf).
    ``target_terms``: (target, dL_i/dtarget_i) for a float target, weighted likewise. ``bad``
    (under XLA, ``poison_in_counts``): per entry, whether it poisons the batch, read from the
    histogram's slot M + 1 and joined to ``ok``. With
    ``sync_density`` the counts (and N) are the global batch's over the replicas in sync, so
    that the replicas' losses and gradients sum (as Keras and tf.distribute sum them) to the
    global batch's (spec.md section 11). Returns (loss, new_state, new_initialized), and the
    diagnostics of spec.md 13 as a fourth value when ``diagnose`` (``_diagnostics.collector``) is given."""
    dtype = per_entry_loss.dtype
    counts = region_counts(ind, bins, bad)
    if bad is not None:
        ok = ok & tf.equal(counts[bins + 1], 0)
        counts = counts[: bins + 1]
    local_counts = counts
    if sync_density:
        counts, ok = sum_counts(counts, ok, bins)
    beta, new_state, new_initialized, n_valid = harmonize(
        counts, ok, bins=bins, momentum=momentum, dialect=dialect, dtype=dtype, state=state, initialized=initialized
    )
    scale = tf.constant(loss_weight, dtype)
    if reduction == "mean":
        scale = scale / tf.cast(tf.maximum(n_valid, 1), dtype)
    # ``ind`` without the poison slot: a poisoned batch's beta is NaN in every region anyway, and
    # under XLA the gather then recomputes ind without reading the inputs the flag is made of
    w = tf.gather(_materialized(beta * scale), ind)  # beta_i * scale, per entry
    if valid is not None:  # masked products are 0, whatever NaN or Inf the entry holds
        w_of = lambda terms: tf.where(valid, w * terms, tf.zeros([], dtype))  # noqa: E731
    else:
        w_of = lambda terms: w * terms  # noqa: E731
    grad, weighted = w_of(per_entry_grad), w_of(per_entry_loss)
    if target_terms is not None:
        target_terms = (target_terms[0], w_of(target_terms[1]))
    loss = weighted if reduction == "none" else _accurate_sum(weighted)
    if diagnose is None:
        return _with_gradient(pred, loss, grad, target_terms), new_state, new_initialized
    diagnostics = diagnose(
        ind=ind,
        per_entry_grad=per_entry_grad,
        counts=counts,
        local_counts=local_counts,
        ok=ok,
        beta=beta,
        new_state=new_state,
        n_valid=n_valid,
        bins=bins,
        momentum=momentum,
        reduction=reduction,
        loss_weight=loss_weight,
    )
    return _with_gradient(pred, loss, grad, target_terms), new_state, new_initialized, diagnostics
