"""mkdocs hooks: the site shows files that live outside docs/ without copying them.

- ``spec.md`` and ``CHANGELOG.md`` stay at the repository root (where people and tools expect
  them) and become the pages ``spec.md`` and ``changelog.md``.
- A page may link to any file of the repository by its relative path (``../benchmarks/results.md``,
  ``docs/figures/beta.png`` from spec.md): the link works on GitHub as written, and here the hook
  adds the file to the site and rewrites the link to where the site puts it.
- ``<!-- include: PATH -->`` (PATH relative to the page) inserts a generated file, e.g. the
  figures' results table, with its headings one level down, so a generated table is shown
  where it belongs and never copied by hand. Put a visible link to the same file beside it:
  GitHub shows the comment as nothing.
- The version shown beside the site's name is pyproject.toml's, the one place it is written.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parent.parent
DOCS = "docs"
# repository path -> the page's path in the site
ROOT_PAGES = {"spec.md": "spec.md", "CHANGELOG.md": "changelog.md"}
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)
FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")


def version() -> str:
    """pyproject.toml's [project] version (read as text: tomllib is Python 3.11+)."""
    found = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    if found is None:
        raise ValueError("pyproject.toml has no [project] version line")
    return found.group(1)


def site_path(repo_path: str) -> str:
    """Where the site puts a repository file (a path relative to docs_dir)."""
    if repo_path in ROOT_PAGES:
        return ROOT_PAGES[repo_path]
    if repo_path.startswith(DOCS + "/"):
        return repo_path[len(DOCS) + 1 :]
    return repo_path


def repo_path_of(site_uri: str) -> str:
    for repo, site in ROOT_PAGES.items():
        if site == site_uri:
            return repo
    return f"{DOCS}/{site_uri}" if (ROOT / DOCS / site_uri).exists() else site_uri


def _is_local(target: str) -> bool:
    return not (target.startswith(("http://", "https://", "mailto:", "#", "/")) or "://" in target)


def _outside_code(text: str):
    """(line, is_code) for each line of a markdown text, fenced code blocks marked (a fence is
    closed by a bare fence of the same character, at least as long)."""
    fenced = None
    for line in text.splitlines(keepends=True):
        m = FENCE.match(line)
        if m and fenced is None:
            fenced = m.group(1)
            yield line, True
        elif (
            m
            and fenced is not None
            and m.group(1)[0] == fenced[0]
            and len(m.group(1)) >= len(fenced)
            and not m.group(2).strip()
        ):
            fenced = None
            yield line, True
        else:
            yield line, fenced is not None


def rewrite_links(markdown: str, repo_page: str, site_page: str) -> str:
    """Links of a page (at ``repo_page`` in the repository, ``site_page`` in the site) rewritten
    to the site's layout; links outside fenced code only."""

    def one(m: re.Match) -> str:
        target = m.group(2)
        if not _is_local(target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_page), path))
        if repo_target.startswith("..") or not (ROOT / repo_target).exists():
            return m.group(0)  # mkdocs reports it (strict: an error)
        new = posixpath.relpath(site_path(repo_target), posixpath.dirname(site_page) or ".")
        return m.group(1) + new + ("#" + anchor if anchor else "") + m.group(3)

    return "".join(line if code else LINK.sub(one, line) for line, code in _outside_code(markdown))


def _demote(markdown: str) -> str:
    return "".join(
        ("#" + line if (not code and line.startswith("#")) else line) for line, code in _outside_code(markdown)
    )


def expand_includes(markdown: str, repo_page: str, site_page: str) -> str:
    def one(m: re.Match) -> str:
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_page), m.group(1)))
        if not (ROOT / repo_target).is_file():
            raise FileNotFoundError(f"{repo_page}: <!-- include: {m.group(1)} --> names no file ({repo_target})")
        text = (ROOT / repo_target).read_text(encoding="utf-8")
        return _demote(rewrite_links(text, repo_target, site_page))

    return INCLUDE.sub(one, markdown)


def _linked_repo_files(markdown: str, repo_page: str) -> set[str]:
    out = set()
    for line, code in _outside_code(markdown):
        if code:
            continue
        for m in LINK.finditer(line):
            if _is_local(m.group(2)):
                path = m.group(2).partition("#")[0]
                repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_page), path))
                if not repo_target.startswith(("..", DOCS + "/")) and (ROOT / repo_target).is_file():
                    out.add(repo_target)
    return out


# ---------------------------------------------------------------- mkdocs events


def on_config(config, **kwargs):
    config.site_name = f"{config.site_name} {version()}"
    return config


def on_files(files: Files, config, **kwargs) -> Files:
    pages = [(repo, (ROOT / repo).read_text(encoding="utf-8")) for repo in ROOT_PAGES]
    pages += [
        (f"{DOCS}/{f.src_uri}", (ROOT / DOCS / f.src_uri).read_text(encoding="utf-8"))
        for f in files.documentation_pages()
        if f.abs_src_path and Path(f.abs_src_path).is_relative_to(ROOT / DOCS)
    ]
    wanted = set(ROOT_PAGES)
    for repo, text in pages:
        wanted |= _linked_repo_files(text, repo)
    for repo in sorted(wanted):
        if files.get_file_from_path(site_path(repo)) is None:
            inclusion = InclusionLevel.INCLUDED if repo in ROOT_PAGES else InclusionLevel.NOT_IN_NAV
            files.append(File.generated(config, site_path(repo), abs_src_path=str(ROOT / repo), inclusion=inclusion))
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    site = page.file.src_uri
    repo = repo_path_of(site)
    return rewrite_links(expand_includes(markdown, repo, site), repo, site)
