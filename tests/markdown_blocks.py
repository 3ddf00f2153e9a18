"""The fenced code blocks of the project's markdown, for tests/test_docs.py.

The convention (docs/contributing.md, "Docs that run"): every ```python and ```bash block of
README.md, spec.md, CHANGELOG.md and docs/ runs in the test suite, except a block whose title
starts with "fragment", e.g. ```python title="fragment: model is yours"``: the site shows that
title above the block, so a reader sees it is not meant to run as it stands. Blocks of other
languages (text, toml, yaml, ...) are not code and do not run; every block names its language.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
NOT_CODE = {"text", "console", "toml", "yaml", "json", "ini", "diff", "markdown", "md"}
FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
TITLE = re.compile(r'title="(?P<title>[^"]*)"')
FIRST_PARTY = (
    "reference",
    "impl_torch",
    "impl_tf",
    "impl_keras",
    "impl_jax",
    "ghm_conformance",
    "ghm_diagnostics",
    "ghm_args",
)


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str
    title: str
    code: str

    @property
    def fragment(self) -> bool:
        return self.title.lower().startswith("fragment")

    @property
    def runner(self) -> str | None:
        return RUN.get(self.language)

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def markdown_files() -> list[str]:
    """README.md, spec.md, CHANGELOG.md and the site's pages (not docs/_incoming/, drafts that
    the lead merges into pages)."""
    docs = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "docs").rglob("*.md")
        if "_incoming" not in p.relative_to(ROOT).parts
    )
    return [p for p in ("README.md", "spec.md", "CHANGELOG.md") if (ROOT / p).exists()] + docs


def blocks(path: str) -> list[Block]:
    out = []
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group("indent")), m.group("fence"), m.group("info").strip()
        body, j = [], i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        language = info.split()[0].lstrip("{.").rstrip("}") if info else ""
        title = TITLE.search(info)
        out.append(Block(path, i + 1, language, title.group("title") if title else "", "\n".join(body) + "\n"))
        i = j + 1
    return out


def all_blocks() -> list[Block]:
    return [b for path in markdown_files() for b in blocks(path)]


def first_party_imports(code: str) -> list[tuple[str, str]]:
    """(module, name) of each ``from <first-party module> import name`` in a python block."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] in FIRST_PARTY
        ):
            out += [(node.module, alias.name) for alias in node.names]
    return out


def module_source(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def exported_names(module: str) -> set[str] | None:
    """A package's ``__all__``, or a module's top-level names (read from the source: no framework
    is imported). None if the module does not exist."""
    source = module_source(module)
    if source is None:
        return None
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    if source.name == "__init__.py":  # submodules are importable names of a package
        names |= {p.stem for p in source.parent.glob("*.py")} | {p.name for p in source.parent.iterdir() if p.is_dir()}
    return names
