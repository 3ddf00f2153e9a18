"""The fast and slow suites stay what tests/conftest.py says they are."""

from pathlib import Path

import pytest

from conftest import SLOW

TESTS = Path(__file__).parent


@pytest.mark.parametrize("entry", sorted(SLOW))
def test_every_slow_entry_names_a_test_that_exists(entry):
    file, _, test = entry.partition("::")
    assert (TESTS / file).is_file(), f"tests/conftest.py's SLOW names {file}, which does not exist"
    if test:
        assert f"def {test}(" in (TESTS / file).read_text(encoding="utf-8"), (
            f"tests/conftest.py's SLOW names {entry}, but {file} has no such test: a renamed test would fall "
            f"into the fast suite"
        )
