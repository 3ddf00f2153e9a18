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
settings.register_profile("ci", max_examples=FAST_BUDGET, derandomize=True, deadline=None, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=FAST_BUDGET, deadline=None)
settings.register_profile("full", max_examples=50, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


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
