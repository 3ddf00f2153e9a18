"""The documents' links and images point at files that exist in the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "spec.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _local_targets(doc: str) -> list[str]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    targets = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


@pytest.mark.parametrize("doc", DOCS)
def test_every_local_link_resolves(doc):
    targets = _local_targets(doc)
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_readme_quickstart_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"## Quickstart(.*?)\n## ", readme, re.S)
    assert match, "README.md has no Quickstart section"
    lines = [line.split("#", 1)[0] for line in match.group(1).splitlines() if "pytest" in line]
    assert lines, "the Quickstart names no test command"
    steps = [step.strip() for step in lines[0].split("&&")]
    pytest_step = next(step for step in steps if "pytest" in step)
    install_step = next(step for step in steps if "pip install -e" in step)
    for step in (pytest_step, install_step.replace("pip install", "python -m pip install --quiet")):
        assert step in ci, f"the Quickstart's test step {step!r} is not what .ci/run runs"
