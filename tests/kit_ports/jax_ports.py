"""GHM-C written in JAX as a Flax/optax user would port it: mmdetection's GHMC (its loop over the
region edges, stateless) in jax.numpy with optax's sigmoid cross entropy, and the same with one
fault each; seen through the kit by ``from_jax_function`` (``ghm-conformance
kit_ports.jax_ports:official``)."""

import jax
import jax.numpy as jnp

from ghm_conformance.protocol import from_jax_function


def _optax_bce(x, t):
    """optax.sigmoid_binary_cross_entropy: smooth everywhere, so autodiff gives sigmoid(x) - t."""
    return -t * jax.nn.log_sigmoid(x) - (1 - t) * jax.nn.log_sigmoid(-x)


def _max_abs_bce(x, t):
    """The textbook stable form max(x, 0) - x t + log(1 + e^-|x|): the right values, but autodiff
    takes max'(0) = 1/2 and |.|'(0) = 1, so at x = 0 the gradient is 1/2 - t - 1/2, not 1/2 - t."""
    return jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _ghmc(pred, target, label_weight, *, bins, count_masked=False, bce=_optax_bce):
    edges = [i / bins for i in range(bins + 1)]
    edges[-1] += 1e-6
    g = jnp.abs(jax.nn.sigmoid(jax.lax.stop_gradient(pred)) - target)
    valid = label_weight > 0
    tot = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    weights = jnp.zeros_like(pred)
    n = 0
    for i in range(bins):
        in_region = (g >= edges[i]) & (g < edges[i + 1])
        inds = in_region & valid
        num = jnp.sum(in_region if count_masked else inds)
        weights = jnp.where(inds, tot / jnp.maximum(num, 1), weights)
        n = n + (num > 0)
    weights = weights / jnp.maximum(n, 1)
    return jnp.sum(weights * bce(pred, target)) / tot


def official_ghmc(pred, target, label_weight, *, bins):
    return _ghmc(pred, target, label_weight, bins=bins)


def ghmc_counting_masked_entries(pred, target, label_weight, *, bins):
    """the regions count masked entries too (a port that applied label_weight only to the loss)."""
    return _ghmc(pred, target, label_weight, bins=bins, count_masked=True)


def ghmc_with_max_abs_bce(pred, target, label_weight, *, bins):
    """the cross entropy as max(x, 0) - x t + log1p(exp(-|x|)): a wrong gradient at x = 0 exactly."""
    return _ghmc(pred, target, label_weight, bins=bins, bce=_max_abs_bce)


official = from_jax_function(official_ghmc)
counting_masked = from_jax_function(ghmc_counting_masked_entries)
max_abs_bce = from_jax_function(ghmc_with_max_abs_bce)
