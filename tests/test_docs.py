"""The documentation is tested like code: every python and bash block of README.md, spec.md,
CHANGELOG.md and docs/ runs (except blocks titled "fragment...", tests/markdown_blocks.py), every
name the docs import from this project's packages is one they export, and every local link
resolves. A block that needs a framework that is not installed is skipped, naming it."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import sys

import pytest

from markdown_blocks import NOT_CODE, ROOT, RUN, all_blocks, exported_names, first_party_imports, markdown_files

LINK = re.compile(r"\]\(([^)\s]+)\)")
# Optional dependencies: a block that imports one of these (directly, or through impl_torch and
# the like) skips when it is missing. Anything else missing fails.
OPTIONAL = {
    "torch",
    "tensorflow",
    "keras",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "keras_hub",
    "mmdet",
    "mmengine",
    "torchvision",
    "matplotlib",
    "pycocotools",
}
BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.runner and not b.fragment]


def test_the_collector_finds_the_documents_and_their_blocks():
    files = markdown_files()
    for expected in ("README.md", "spec.md", "docs/index.md", "docs/losses/torch.md", "docs/contributing.md"):
        assert expected in files, f"{expected} is not among the documents whose code is run"
    assert len(RUNNABLE) >= 15, f"only {len(RUNNABLE)} runnable blocks found: is the fence parser broken?"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_every_block_names_its_language(block):
    assert block.language in RUN or block.language in NOT_CODE, (
        f"{block.id}: a code block with language {block.language!r}; name it (python, bash, or text for "
        f"a formula or an output)"
    )


@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.runner == "python"], ids=lambda b: b.id)
def test_python_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands in a temporary folder
    code = compile(block.code, f"{block.path}:{block.line}", "exec")
    try:
        exec(code, {"__name__": "__docs__"})
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{block.id} needs {e.name}, which is not installed")
        raise


@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.runner == "bash"], ids=lambda b: b.id)
def test_bash_block_runs(block):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="3"
    )
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{block.id} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


IMPORTS = sorted(
    {(b.id, module, name) for b in BLOCKS if b.runner == "python" for module, name in first_party_imports(b.code)}
)


@pytest.mark.parametrize("where, module, name", IMPORTS, ids=[f"{m}.{n}" for _, m, n in IMPORTS])
def test_what_the_docs_import_is_exported(where, module, name):
    # fragments too: they do not run, but a reader copies their imports
    exported = exported_names(module)
    assert exported is not None, f"{where} imports from {module}, which does not exist"
    assert name in exported, f"{where}: `from {module} import {name}`, but {module} does not export {name}"


def _local_targets(doc: str) -> list[str]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code are not links
    targets = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        targets.append(posixpath.normpath(posixpath.join(posixpath.dirname(doc), target.split("#", 1)[0])))
    return targets


@pytest.mark.parametrize("doc", markdown_files())
def test_every_local_link_resolves(doc):
    missing = [t for t in _local_targets(doc) if not (ROOT / t).exists()]
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_readme_is_the_short_form():
    size = (ROOT / "README.md").stat().st_size
    assert size <= 8500, f"README.md is {size} bytes: keep it the landing page's short form, the rest in docs/"


def test_readme_test_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.split("#", 1)[0].strip() for line in readme.splitlines() if "python -m pytest" in line]
    steps = [step.strip() for line in commands for step in line.split("&&") if "python -m pytest" in step]
    assert any('-m "not slow"' in s for s in steps), 'the README names no fast test command (-m "not slow")'
    assert any("-m slow" in s for s in steps), "the README names no command for the slow tests (-m slow)"
    for step in steps:
        assert step in ci, f"the README's test command {step!r} is not what .ci/run runs"
    install = next(
        s.strip() for line in readme.splitlines() for s in line.split("&&") if "pip install -e" in s and "test" in s
    )
    assert install.replace("pip install", "python -m pip install --quiet") in ci, (
        f"the README's install step {install!r} is not what .ci/run installs"
    )


def test_the_changelog_starts_at_the_version_of_pyproject():
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(1)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?", changelog, re.M)
    assert released and released[0] == version, (
        f"pyproject.toml says {version}, the changelog's latest version is {released[:1]}: bump both together"
    )


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    spec = (tmp_path / "site" / "spec" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in spec, "spec.md's equations are not rendered as math"
    assert 'src="../figures/gradient_norm.png"' in spec, "spec.md's figures do not point at the site's copies"


@pytest.mark.parametrize(
    "package", ["reference", "impl_torch", "impl_keras", "impl_tf", "impl_jax", "ghm_conformance", "ghm_diagnostics"]
)
def test_every_exported_name_is_in_the_api_reference(package):
    # documented by a `::: package.Name` directive (mkdocstrings renders its docstring) or named
    # in the page's text (re-exports and constants)
    page = (ROOT / "docs" / "api" / f"{package}.md").read_text(encoding="utf-8")
    exported = exported_names(package) or set()
    missing = sorted(n for n in exported if f"{package}.{n}" not in page)
    assert not missing, f"docs/api/{package}.md does not document {missing}, which {package} exports"
