"""Every tolerance the loss tests use, in one place, with the reason for its size.

A float32 implementation is compared with the float64 reference. Each loss term is a handful
of float32 operations (relative error a few eps32 = 1.2e-7 each) and the sums are pairwise, so
on the small batches of the tests the relative error stays below 1e-6; the tolerances leave
a factor of about 20 on that, no more: a real disagreement (a wrong region, a missing 1/N, a
dialect mix-up) is off by far more than 1e-4.
"""

from __future__ import annotations

# name -> dict(rtol=..., atol=...) for numpy.testing.assert_allclose
TOLERANCE = {
    # float32 loss or gradient vs the float64 reference, inputs away from region edges.
    # atol covers terms that are themselves ~1e-7 (a saturated, well classified entry).
    "float32": dict(rtol=2e-5, atol=1e-7),
    # float64 implementation vs float64 reference: only the order of operations differs.
    "float64": dict(rtol=1e-9, atol=1e-12),
    # float16/bfloat16 inputs: the statistics are float32 on the dequantised inputs, so the
    # result matches the reference on those inputs as tightly as float32 does.
    "half_inputs": dict(rtol=2e-5, atol=1e-7),
    # The gradient reaching float16 / bfloat16 inputs: the float32 gradient rounded once to that
    # dtype (spec.md 8), so half an ulp of it: 2^-11 = 4.9e-4 (float16), 2^-8 = 3.9e-3 (bfloat16)
    # relative, with a little room for the float32 rounding before; atol is float16's smallest
    # subnormal (a gradient below it is 0 in float16, whatever is right).
    "float16_gradient": dict(rtol=5e-4, atol=6e-8),
    "bfloat16_gradient": dict(rtol=4e-3, atol=1e-38),
    # The same float32 computation compiled (inductor / XLA) and eager: fused kernels reorder
    # sums and may use another transcendental implementation (a few ulps per term).
    "compiled_vs_eager": dict(rtol=1e-6, atol=1e-7),
    # Central finite differences of the float64 loss with a step far from any region edge:
    # truncation error O(h^2) with h = 1e-6 (tf.test.compute_gradient / torch gradcheck).
    "finite_differences": dict(rtol=1e-5, atol=1e-9),
    # The float32 EMA state against the float64 reference state: one rounding of each value
    # (5.96e-8 relative), accumulated over a few calls.
    "ema_state": dict(rtol=1e-6, atol=0.0),
    # Parameters after a few SGD steps, DDP (gradients averaged over ranks, in another order)
    # against one process: each step adds a few float32 roundings of the gradient, times the
    # learning rate; a wrong scaling (W, 1/N) would be off by a factor, not by 1e-5.
    "trained_parameters": dict(rtol=1e-5, atol=1e-6),
    # A sum over 2^24 + 3 float32 terms: a pairwise or float64 accumulation keeps the relative
    # error near 1e-6; a sequential float32 sum would be ~1e-4 off (spec.md 8).
    "huge_sum": dict(rtol=1e-5, atol=0.0),
}
