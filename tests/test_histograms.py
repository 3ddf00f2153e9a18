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


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("poison", [False, True], ids=["spare slot", "poison slot"])
def test_jax_region_counts_are_exact(bins, poison):
    jax = pytest.importorskip("jax")
    from impl_jax._harmonize import region_counts

    counted = jax.jit(region_counts, static_argnums=(1, 2))
    for n in SIZES:
        ind = _indices(n, bins, poison)
        got = np.asarray(counted(ind, bins, poison))
        np.testing.assert_array_equal(got, np.bincount(ind, minlength=bins + 1 + poison), err_msg=f"{n} entries")


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("poison", [False, True], ids=["spare slot", "poison slot"])
def test_tf_xla_region_counts_are_exact(bins, poison):
    tf = pytest.importorskip("tensorflow")
    from impl_tf._harmonize import region_counts

    for n in SIZES:
        ind = _indices(n, bins, poison)
        counted = tf.function(lambda i: region_counts(i, bins, poison), jit_compile=True)  # static size: tail path
        np.testing.assert_array_equal(
            counted(tf.constant(ind)).numpy(), np.bincount(ind, minlength=bins + 1 + poison), err_msg=f"{n} entries"
        )
    unknown = tf.function(
        lambda i: region_counts(i, bins, poison), jit_compile=True, input_signature=[tf.TensorSpec([None], tf.int32)]
    )  # unknown size: padded path
    ind = _indices(100003, bins, poison)
    np.testing.assert_array_equal(unknown(tf.constant(ind)).numpy(), np.bincount(ind, minlength=bins + 1 + poison))
