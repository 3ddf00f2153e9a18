"""What every adapter of ``ports/`` shares: where a port's source file lives, how it is loaded
with the load-time patches it needs (stub modules for the imports that would pull in a whole
framework: registries, utilities), and a lazy factory, so that importing an adapter never needs
the port's source.

The source of a port is expected at ``$GHM_PORT_SOURCES/<owner>/<repo>/<path>`` (the census
sets GHM_PORT_SOURCES from ``--sources DIR``); each adapter's docstring says how to download it.
No port code is part of this project.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV = "GHM_PORT_SOURCES"


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    commit: str
    path: str  # inside the repository

    def file(self, root: str | os.PathLike | None = None) -> Path:
        root = root if root is not None else os.environ.get(ENV)
        if not root:
            raise FileNotFoundError(f"set {ENV} (or the census's --sources) to the folder holding <owner>/<repo>/...")
        return Path(root) / self.repo / self.path

    @property
    def download(self) -> str:
        return (
            f"git clone https://github.com/{self.repo} DIR/{self.repo} && git -C DIR/{self.repo} checkout {self.commit}"
        )

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.path}"


@dataclass(frozen=True)
class PortEntry:
    """One way to check one public port: what the census runs and what the table shows."""

    name: str  # e.g. "GHMC"
    attr: str  # the adapter module's factory attribute, for ``ghm-conformance ports.<module>:<attr>``
    loss: str  # "c" or "r"
    call: str  # the call shape, in words
    reading: str  # what the port computes, by reading its code: the verdict expected
    reason: str  # the one-line reason, in a user's words ("" for a conforming port)
    cli_args: tuple[str, ...] = ()  # e.g. ("--targets", "class-index")
    wiring: str = "as written"  # or "as its README says to call it"


@dataclass
class Adapter:
    """A port's source and the entries the census checks."""

    source: Source
    framework: str
    patches: tuple[str, ...]
    entries: list[PortEntry] = field(default_factory=list)
    package: str | None = None  # a package it needs beyond torch / tensorflow
    origin: str | None = None  # the repository this file was copied or derived from (None: its own origin)
    copies: tuple[str, ...] = ()  # other repositories holding a copy of this code, found but not run again

    @property
    def source_of_record(self) -> str:
        """The source this adapter counts under in the census: its origin when it is a copy."""
        return self.origin or self.source.repo


def stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # a package, so that submodules and relative imports resolve
    return module


class Registry:
    """A stand-in for mmdetection's registries: ``register_module`` (with or without arguments)
    returns the class unchanged."""

    def register_module(self, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], type) and not kwargs:
            return args[0]
        return lambda cls: cls


@contextlib.contextmanager
def cuda_is_a_no_op():
    """A load-time patch for code that calls ``.cuda()`` in ``__init__`` (it needs a GPU to be
    constructed): while the loss is built, ``Tensor.cuda`` returns the tensor unchanged."""
    import torch

    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


def load(source: Source, *, module_name: str, stubs: dict[str, types.ModuleType] | None = None) -> types.ModuleType:
    """Execute the port's file as ``module_name`` (a dotted name, so that its relative imports
    resolve against ``stubs``), with ``stubs`` in sys.modules while it runs. Each stub is a
    load-time patch the adapter lists."""
    path = source.file()
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; download it: {source.download}")
    stubs = dict(stubs or {})
    parts = module_name.split(".")
    for i in range(1, len(parts)):  # the parent packages of module_name
        stubs.setdefault(".".join(parts[:i]), stub(".".join(parts[:i])))
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


class LazyFactory:
    """A port factory built on first use (the source is read then), whose protocol attributes
    (``class_index``, ``label_weight``) are the built factory's."""

    def __init__(self, build: Callable[[], Callable]):
        self._build, self._factory = build, None

    def _get(self) -> Callable:
        if self._factory is None:
            self._factory = self._build()
        return self._factory

    def __call__(self, **kwargs):
        return self._get()(**kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._get(), name)
