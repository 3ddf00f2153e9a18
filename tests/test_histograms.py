"""The packed histograms of the XLA paths (impl_tf under XLA, impl_jax from 2^16 entries): k region
indices packed into one code, counted in N / k scatter updates, the last N mod k entries on their
own, and the poison slot M + 1, exact against np.bincount at the sizes where the paths switch."""

import numpy as np
import pytest

SIZES = [5, 65536, 100003]
BINS = [1, 30, 100]


def _indices(n, bins, poison):
    rng = np.random.default_rng(n * 1000 + bins * 10 + poison)
    # skewed like a detector's easy negatives, every slot reachable
    ind = np.where(rng.random(n) < 0.7, 0, rng.integers(0, bins + 1 + poison, size=n))
    return ind.astype(np.int32)


def _flagged(ind, bins, poison):
    """The implementations' input for ``ind``: region indices that never hold M + 1 (the weights'
    gather reads them), and with ``poison`` the per-entry flag ``bad``; a flagged entry counts in
    M + 1, not in its region."""
    if not poison:
        return ind, None
    flagged = ind == bins + 1
    return np.where(flagged, 0, ind).astype(np.int32), flagged


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("poison", [False, True], ids=["spare slot", "poison slot"])
def test_jax_region_counts_are_exact(bins, poison):
    jax = pytest.importorskip("jax")
    from impl_jax._harmonize import region_counts

    counted = jax.jit(region_counts, static_argnums=(1,))
    for n in SIZES:
        ind = _indices(n, bins, poison)
        regions, flagged = _flagged(ind, bins, poison)
        got = np.asarray(counted(regions, bins, flagged))
        np.testing.assert_array_equal(got, np.bincount(ind, minlength=bins + 1 + poison), err_msg=f"{n} entries")


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("poison", [False, True], ids=["spare slot", "poison slot"])
def test_tf_xla_region_counts_are_exact(bins, poison):
    tf = pytest.importorskip("tensorflow")
    from impl_tf._harmonize import region_counts

    def args(ind):
        regions, flagged = _flagged(ind, bins, poison)
        return (tf.constant(regions),) if flagged is None else (tf.constant(regions), tf.constant(flagged))

    def count(i, bad=None):
        return region_counts(i, bins, bad)

    for n in SIZES:
        ind = _indices(n, bins, poison)
        counted = tf.function(count, jit_compile=True)  # static size: tail path
        np.testing.assert_array_equal(
            counted(*args(ind)).numpy(), np.bincount(ind, minlength=bins + 1 + poison), err_msg=f"{n} entries"
        )
    signature = [tf.TensorSpec([None], tf.int32)] + ([tf.TensorSpec([None], tf.bool)] if poison else [])
    unknown = tf.function(count, jit_compile=True, input_signature=signature)  # unknown size: padded path
    ind = _indices(100003, bins, poison)
    np.testing.assert_array_equal(unknown(*args(ind)).numpy(), np.bincount(ind, minlength=bins + 1 + poison))
