"""Hypothesis profiles (select with HYPOTHESIS_PROFILE=NAME; docs/contributing.md, "Tests"):

- ``dev`` (the default): a fresh random seed each run, at the fast suite's budget.
- ``ci`` (the default when CI is set): the same budget, deterministic (derandomized, no database).
- ``full``: a larger budget, fresh seed: what .ci/run reruns the property tests with.
- ``thorough``: a long search, for a local run before a change to the math.

The budget also sizes the conformance kit's own searches (``examples()``)."""

import os

import pytest
from hypothesis import HealthCheck, settings

FAST_BUDGET = 10
settings.register_profile(
    "ci",
    max_examples=FAST_BUDGET,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=FAST_BUDGET, deadline=None)
settings.register_profile("full", max_examples=50, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# The slow suite (`python -m pytest -m slow tests`): the tests below, and those marked
# @pytest.mark.slow in their files (the counts past 2^24 entries). Each checks what the fast suite
# (`-m "not slow"`, the README's command) checks at a smaller size or in-process; CI runs both.
# A file name marks the whole file, "file::test" one test (every parametrization of it).
SLOW = {
    "test_keras_backends.py": "every Keras backend in a process of its own, keras-hub's RetinaNet on each",
    "test_distributed.py::test_synced_density_matches_the_reference_on_the_global_batch": "2 and 3 gloo ranks",
    "test_distributed.py::test_ddp_model_trains_exactly_as_one_process_on_the_whole_batch": "a DDP run on 2 ranks",
    "test_distributed.py::test_synced_loss_compiles_with_fullgraph": "torch.compile on 2 ranks",
    "test_distributed.py::test_sync_density_on_a_process_outside_the_group_is_a_clear_error": "3 gloo ranks",
    "test_distributed.py::test_tf_mirrored_strategy_synced_density_matches_the_reference": "tf.distribute, 2 devices",
    "test_scripts.py": "the benchmarks, the figures and the examples run at toy sizes, each a process",
    "test_detectors.py::test_keras_hub_retinanet_trains_with_ghm_and_reloads_its_state": "keras-hub RetinaNet fit",
    "test_census.py::test_the_census_produces_every_row_with_the_expected_verdict": "a process per zoo port",
    "test_mixed_precision.py": "10^6-entry gradients in every mixed-precision setup",
    "test_conformance_kit.py::test_cli_default_target_checks_the_bundled_losses": "the README's first command, "
    "whole: every bundled loss in both dialects, JAX compiling per shape",
    "test_conformance_kit.py::test_a_jax_port_is_checked_through_from_jax_function": "a CLI process per JAX port, "
    "compiling per shape",
    "test_losses.py::test_loss_object_passes_the_catalogue": "the whole catalogue per framework and dialect (JAX "
    "compiling per shape: 40 s each); the fast suite checks each framework's functions against the reference",
    "test_torch.py::test_compiled_modules_pass_the_catalogue": "the whole catalogue under torch.compile, a "
    "recompilation per shape",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        file = item.path.name
        if file in SLOW or f"{file}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)


def examples() -> int:
    """The active profile's example budget, for the conformance runner's own searches."""
    return settings().max_examples


@pytest.fixture
def n_examples() -> int:
    return examples()


def assert_catalogue_passes(report, dialect: str) -> None:
    """The port is judged to be in ``dialect`` and passes every property that counts."""
    assert report.verdict.label == dialect, report.verdict.summary + ": " + report.verdict.reason
    for r in report.counted_rows():
        assert r.status == "passed", f"{r.name}: {r.counterexample.outcome.message if r.counterexample else r.note}"
