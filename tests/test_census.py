"""The census of public ports (ghm_conformance.census, docs/ports.md). CI cannot download the
ports, so the census runs here on zoo ports dressed as adapters (tests/census_zoo): every row
is produced by its own command, with the verdict its reading expects. The real adapters of
ports/ are checked for what needs no download: they import, name a source and a reading, and
build nothing until asked."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

from ghm_conformance.census import adapters

TESTS = Path(__file__).parent
ROOT = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))


def test_the_census_produces_every_row_with_the_expected_verdict(tmp_path):
    (tmp_path / "zoo" / "ports").mkdir(parents=True)
    (tmp_path / "zoo" / "ports" / "zoo.py").write_text("")  # the stand-in "source"
    out = tmp_path / "ports.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ghm_conformance.census",
            "--sources",
            str(tmp_path),
            "--adapters",
            "census_zoo",
            "--out",
            str(out),
            "--max-examples",
            "5",
        ],
        capture_output=True,
        text=True,
        cwd=TESTS,
        env=ENV,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    ((module, adapter),) = adapters("census_zoo")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "ghm-conformance" in line]
    assert [row.split(" (")[0][2:] for row in rows] == [e.name for e in adapter.entries], "rows in adapter order"
    for entry in adapter.entries:
        row = next(line for line in table.splitlines() if line.startswith(f"| {entry.name} ("))
        assert f"| {entry.reading} |" in row and "| yes |" in row, row
        assert f"ghm-conformance {module}:{entry.attr} --loss {entry.loss}" in row, row
    # the "why" column carries the kit's own words where it has them (a dialect except an input class)
    edge = next(line for line in rows if line.startswith("| edge closed ("))
    assert "(kit: matches mmdet everywhere except g exactly on a region edge" in edge, edge
    # sources, copies, what could not be run and where the census looked: sections of their own
    assert "4 of 4 ports run, from 1 source;" in table
    assert "Copies found (not run again): zoo/copy." in table
    assert "## Looked at but could not run" in table and "| zoo/unrunnable, `zoo_port.cpp` | C++ |" in table
    assert "## Where we looked" in table and "the zoo of tests/zoo.py" in table


def test_a_missing_source_is_listed_not_run(tmp_path):
    out = tmp_path / "ports.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ghm_conformance.census",
            "--sources",
            str(tmp_path),
            "--adapters",
            "census_zoo",
            "--out",
            str(out),
            "--jobs",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=TESTS,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text().count("not run: source not present") == 4


def test_every_adapter_of_ports_names_its_source_and_reading_and_loads_nothing_on_import(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.delenv("GHM_PORT_SOURCES", raising=False)
    found = adapters("ports")
    assert len({m for m, _ in found}) >= 20 and sum(len(a.entries) for _, a in found) >= 30
    assert len({a.source_of_record for _, a in found}) >= 20, "sources: copies count under their origin"
    from ports._looked import NOT_RUN, WHERE

    assert NOT_RUN and WHERE and all(x.repo and x.reason for x in NOT_RUN)
    for module, adapter in found:
        assert all("/" in c for c in adapter.copies) and (adapter.origin is None or "/" in adapter.origin), module
        src = adapter.source
        assert len(src.commit) == 40 and "/" in src.repo and src.path, module
        doc = importlib.import_module(module).__doc__
        assert src.repo in doc and src.commit[:7] in doc, f"{module}'s docstring must say where to download it"
        for entry in adapter.entries:
            factory = getattr(importlib.import_module(module), entry.attr)
            assert entry.loss in ("c", "r") and entry.reading, (module, entry.attr)
            assert factory._factory is None, "an adapter must not read its source before it is asked to"


def test_docs_ports_lists_at_least_30_ports_and_the_official_code_conforms():
    table = (ROOT / "docs" / "ports.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "ghm-conformance ports." in line]
    assert len(rows) >= 30
    assert any("[GXYM/GHM_Loss]" in row for row in rows) and any("[yeliudev/nncore]" in row for row in rows)
    assert "## Looked at but could not run" in table and "## Where we looked" in table
    assert not any("| **no** |" in row for row in rows), "every verdict agrees with the reading of the port's code"
    official = [
        row for row in rows if "ports.mmdet_2x:" in row or "ports.mmdet_3x:" in row or "libuyu/GHM_Detection" in row
    ]
    assert official and all("conforms: mmdet" in row for row in official)
    assert any("| tf" in row for row in rows) and any("| torch" in row for row in rows)
    assert any("GHM-R" in row for row in rows)
