"""The fuzz sweep of issue 28: impl_jax called as users call it (random shapes, pred dtypes, target
forms, label weights with odd values and garbage in masked entries, momentum over several calls)
under jax.grad (eagerly), jax.jit, jit(grad) and jit(vmap), against the reference
(tests/fuzz_cases.py). The Keras losses get the same sweep on every backend
(keras_backend_checks.fuzz_against_the_reference, in the slow suite).

Budget: at least 30 examples (about 40 s on 2 cores: a sweep of this breadth needs more draws than
the fast suite's 10 per property), or the Hypothesis profile's when larger (tests/conftest.py:
``full`` 50, ``thorough`` 400)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import example, given, settings

jax = pytest.importorskip("jax")
jnp = jax.numpy

import fuzz_cases as fz  # noqa: E402
from impl_jax import ghm_c_loss, ghm_r_loss, init_state  # noqa: E402
from tolerances import TOLERANCE  # noqa: E402

FUNCTIONS = {"c": ghm_c_loss, "r": ghm_r_loss}
# jax.grad eagerly (the forward op by op, as an eager call runs it: slow to compile per shape, so one
# transform of four), and under jax.jit: the loss, its gradient, and vmap over two problems
TRANSFORMS = ("jit", "jit_grad", "jit_vmap", "grad")  # the first is drawn most (Hypothesis favours it)


def _jax_calls(plan: fz.Plan, sequence: list[list[fz.Call]]):
    """Run the calls as ``plan.transform`` says: [(loss, grad or None, state)] per call, per problem."""
    f, hyper = FUNCTIONS[plan.kind], plan.hyper()
    problems = len(sequence[0])
    state = None if plan.momentum == 0.0 else init_state(plan.bins)
    if plan.transform == "jit_vmap" and state is not None:
        state = jax.tree_util.tree_map(lambda a: jnp.stack([a] * problems), state)
    out = []
    for row in sequence:
        weighted = row[0].label_weight is not None
        if plan.transform == "jit_vmap":
            args = tuple(
                np.stack([getattr(c, name) for c in row])
                for name in ("pred", "target") + (("label_weight",) if weighted else ())
            )
            mapped = jax.jit(
                jax.vmap(
                    lambda s, p, t, *w: f(p, t, *w, state=s, **hyper),
                    in_axes=(0 if state else None,) + (0,) * len(args),
                )
            )
            losses, state = mapped(state, *args)
            out.append(
                [
                    (losses[i], None, None if state is None else jax.tree_util.tree_map(lambda a, i=i: a[i], state))
                    for i in range(problems)
                ]
            )
            continue
        call = row[0]
        args = (call.pred, call.target) + ((call.label_weight,) if weighted else ())
        if plan.transform in ("grad", "jit_grad"):

            def total(p, t, *w, s):
                loss, new = f(p, t, *w, state=s, **hyper)
                return jnp.sum(loss), (loss, new)

            step = jax.value_and_grad(total, has_aux=True)
            if plan.transform == "jit_grad":
                step = jax.jit(step)
            (_, (loss, state)), grad = step(*args, s=state)
        else:  # "jit"
            loss, state = jax.jit(lambda p, t, *w, s: f(p, t, *w, state=s, **hyper))(*args, s=state)
            grad = None
        out.append([(loss, grad, state)])
    return out


@settings(max_examples=max(30, settings().max_examples))
@given(plan=fz.plans(transforms=TRANSFORMS))
# shrunk failures, kept: subnormal weights masked by XLA's flush-to-zero comparison (before issue 28's
# fix); float64 weights narrowed to float32 at the jit boundary in 32-bit mode (why 64-bit plans run under x64)
@example(
    plan=fz.Plan(
        kind="c",
        dialect="paper",
        reduction="mean",
        bins=1,
        momentum=0.0,
        loss_weight=1.0,
        mu=0.02,
        shape=(2,),
        pred_dtype="float32",
        target_form="int32 indices",
        weights="entry",
        weight_dtype="float32",
        garbage=False,
        calls=1,
        transform="jit",
        seed=0,
    )
)
@example(
    plan=fz.Plan(
        kind="c",
        dialect="paper",
        reduction="mean",
        bins=2,
        momentum=0.0,
        loss_weight=1.0,
        mu=0.02,
        shape=(2,),
        pred_dtype="float32",
        target_form="binary",
        weights="entry",
        weight_dtype="float64",
        garbage=False,
        calls=1,
        transform="jit",
        seed=0,
    )
)
def test_impl_jax_matches_the_reference_under_jit_grad_and_vmap(plan):
    sequence = fz.calls(plan, problems=2 if plan.transform == "jit_vmap" else 1)
    # 64-bit arrays (float64 pred or weights, int64 labels) in JAX's x64 mode, as they stay 64-bit
    # only there: the 32-bit mode narrows them at the jit boundary (JAX's rule; called eagerly,
    # impl_jax reads them on the host first, tested in test_jax.py)
    wide = "float64" in (plan.pred_dtype, plan.weight_dtype) or plan.target_form == "int64 indices"
    with jax.enable_x64(True) if wide else contextlib.nullcontext():
        got = _jax_calls(plan, sequence)
    loss_tol, grad_tol = fz.tolerances(plan)
    for i in range(len(sequence[0])):
        want = fz.expected(plan, [row[i] for row in sequence])
        for step, (row, ref) in enumerate(zip(got, want, strict=True)):
            loss, grad, state = row[i]
            what = f"call {step}, problem {i}"
            np.testing.assert_allclose(np.asarray(loss, np.float64), ref.loss, **loss_tol, err_msg=f"{what}: loss")
            if grad is not None:
                np.testing.assert_allclose(
                    np.asarray(grad, np.float64), ref.grad, **grad_tol, err_msg=f"{what}: gradient"
                )
            if plan.momentum == 0.0:
                assert state is None, what
            elif ref.state is None:  # "paper" before a call with a valid entry
                assert not bool(state.initialized) and not np.asarray(state.ema).any(), what
            else:
                np.testing.assert_allclose(
                    np.asarray(state.ema, np.float64), ref.state, **TOLERANCE["ema_state"], err_msg=f"{what}: EMA state"
                )
