"""Hypothesis profiles: ``ci`` (deterministic, used when CI is set), ``thorough`` (local, larger),
``dev`` (the default otherwise). Select with HYPOTHESIS_PROFILE=thorough."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None)
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
