"""Optional dependencies stay optional: reference needs only NumPy; impl_tf never imports torch or
JAX, impl_torch never TensorFlow or JAX, impl_jax never torch or TensorFlow; impl_keras imports
only the kernels of the backend Keras runs on; ghm_diagnostics needs only NumPy (matplotlib to plot).
The layout has no import cycle: no package imports a package that imports it back, no module one that
imports it back."""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (module, the dependencies it may import, modules it must not add to those they import themselves:
# Keras imports JAX when JAX is installed, whichever backend it runs on)
CASES = [
    ("reference", "numpy", ("torch", "tensorflow", "keras", "hypothesis", "jax")),
    ("impl_tf", "tensorflow, keras", ("torch", "jax", "impl_torch", "impl_jax")),
    ("impl_torch", "torch", ("tensorflow", "keras", "jax")),
    ("impl_jax", "jax", ("torch", "tensorflow", "keras")),
    ("impl_keras", "keras", ("torch", "jax", "impl_torch", "impl_jax")),  # on Keras's default backend, TensorFlow
    ("ghm_diagnostics", "numpy", ("torch", "tensorflow", "keras", "jax", "matplotlib")),
]


@pytest.mark.parametrize("module, allowed, forbidden", CASES)
def test_import_pulls_in_nothing_forbidden(module, allowed, forbidden):
    for dependency in allowed.split(", "):
        pytest.importorskip(dependency)
    code = (
        f"import sys, {allowed}; before = set(sys.modules); import {module}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules and m not in before]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"importing {module} also imported: {proc.stdout.strip()} {proc.stderr[-500:]}"


# ---------------------------------------------------------------- no import cycles (issue 29)

PACKAGES = sorted(
    [p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()]
    + [p.stem for p in ROOT.glob("*.py") if p.stem != "setup"]
)


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else [ROOT / f"{package}.py"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(module imported, line) for every import statement of the file, at module level or in a
    function (a lazy import is a dependency too), except those in a module-level ``__getattr__``:
    a PEP 562 re-export, resolved when the importer asks for the name, after both modules are
    fully imported (impl_tf's GHMCLoss from impl_keras)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)
    }
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import name": the submodule pkg.name where there is one, else pkg itself
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    ROOT / Path(*sub.split(".")) / "__init__.py"
                ).is_file()
                yield (sub if is_module else base), node.lineno


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_package_imports_a_package_that_imports_it_back():
    # issue 29: impl_tf imported impl_keras (to re-export its losses) while impl_keras imports
    # impl_tf's kernels; impl_tf now re-exports them lazily (module __getattr__)
    edges, where = defaultdict(set), {}
    for package in PACKAGES:
        for path in _files(package):
            for module, line in _imports(path):
                top = module.split(".")[0]
                if top in PACKAGES and top != package:
                    edges[package].add(top)
                    where.setdefault((package, top), f"{path.relative_to(ROOT)}:{line}")
    cycles = _cycles(edges)
    assert not cycles, "packages that import each other: " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(where[a, b] for a in c for b in c if (a, b) in where) + ")" for c in cycles
    )


@pytest.mark.parametrize("package", [p for p in PACKAGES if (ROOT / p).is_dir()])
def test_no_module_imports_a_module_that_imports_it_back(package):
    # issue 29: benchmarks' __main__, detector and detection imported each other (their shared
    # helpers are in benchmarks/common.py now)
    edges, modules = defaultdict(set), {_module_name(p) for p in _files(package)}
    for path in _files(package):
        for module, _ in _imports(path):
            if module in modules and module != _module_name(path):
                edges[_module_name(path)].add(module)
    assert not _cycles(edges), f"modules of {package} that import each other: {_cycles(edges)}"


def test_impl_tf_reexports_the_keras_losses_lazily():
    # `from impl_tf import GHMCLoss` is how TensorFlow users import the losses: it keeps working,
    # and importing impl_tf alone does not import impl_keras (that would close the cycle)
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    code = "\n".join(
        [
            "import sys, impl_tf",
            "assert 'impl_keras' not in sys.modules, 'importing impl_tf imported impl_keras'",
            "from impl_tf import GHMCLoss, GHMRLoss",
            "import impl_keras",
            "assert GHMCLoss is impl_keras.GHMCLoss and GHMRLoss is impl_keras.GHMRLoss",
            "assert {'GHMCLoss', 'GHMRLoss'} <= set(dir(impl_tf)) and 'GHMCLoss' in impl_tf.__all__",
            "assert not hasattr(impl_tf, 'GHMXLoss')",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
