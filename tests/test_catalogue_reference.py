"""The property catalogue, proven on the reference itself: every property passes for a port
built on ``reference`` in its own dialect, and the verdict names that dialect."""

import pytest

from conftest import examples
from ghm_conformance import FAILED, PASSED, reference_port, run_catalogue
from ghm_conformance.properties import CATALOGUE


@pytest.mark.parametrize("loss", ["c", "r"])
@pytest.mark.parametrize("dialect", ["paper", "mmdet"])
def test_reference_port_passes_whole_catalogue(loss, dialect):
    report = run_catalogue(reference_port(loss, dialect), loss, max_examples=examples())
    assert report.verdict.label == dialect, report.verdict.summary
    for r in report.counted_rows():
        assert r.status == PASSED, f"{r.name}: {r.counterexample.outcome.message if r.counterexample else r.note}"
    covered = {r.property.id for r in report.results}
    assert covered == {p.id for p in CATALOGUE}
    other = "mmdet" if dialect == "paper" else "paper"
    others = [r for r in report.results if r.dialect == other]
    assert any(r.status == FAILED for r in others), "the catalogue cannot tell the two dialects apart"
