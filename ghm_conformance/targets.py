"""What the kit can check: the bundled torch / tf losses (the default), or ``module:attr``."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import cast

from ghm_args import DIALECTS

from .protocol import (
    PortFactory,
    declaring,
    from_jax_function,
    from_keras_loss,
    from_torch_module,
    with_anchor_weights,
    with_class_index_targets,
)

BUNDLED = {"torch": "impl_torch", "tf": "impl_tf", "jax": "impl_jax"}  # backend -> module


@dataclass
class Target:
    name: str
    loss_kind: str
    make_port: PortFactory
    import_line: str  # how a repro snippet gets make_port
    expected_dialect: str | None = None  # the bundled ports know theirs


def bundled_port(backend: str, loss_kind: str, dialect: str, device: str = "cpu") -> PortFactory:
    """A port over this project's own loss: backend "torch", "tf" (the Keras loss on TensorFlow)
    or "jax" (impl_jax's function, jitted, its state carried), loss_kind "c" or "r", run on
    ``device`` ("cpu", or "cuda" for the GPU)."""
    if backend == "torch":
        import impl_torch

        cls = impl_torch.GHMCLoss if loss_kind == "c" else impl_torch.GHMRLoss
        return from_torch_module(lambda **kw: cls(dialect=dialect, **kw), device=device)
    if backend == "jax":
        import functools

        import impl_jax

        fn = impl_jax.ghm_c_loss if loss_kind == "c" else impl_jax.ghm_r_loss
        return from_jax_function(
            functools.partial(fn, dialect=dialect), stateful=True, device="gpu" if device == "cuda" else "cpu"
        )
    import impl_tf

    cls = impl_tf.GHMCLoss if loss_kind == "c" else impl_tf.GHMRLoss
    return from_keras_loss(lambda **kw: cls(dialect=dialect, **kw), device="/GPU:0" if device == "cuda" else "/CPU:0")


def bundled_targets(
    dialect: str | None = None, loss_kind: str | None = None, backends: tuple[str, ...] = tuple(BUNDLED)
) -> tuple[list[Target], list[str]]:
    """The default: torch, tf and jax, GHM-C and GHM-R, both dialects; and the backends skipped
    (not installed)."""
    targets, skipped = [], []
    for backend in backends:
        module = BUNDLED[backend]
        try:
            importlib.import_module(module)
        except ImportError as e:
            skipped.append(f"{module}: not importable ({e})")
            continue
        for lo in ("c", "r") if loss_kind is None else (loss_kind,):
            for d in DIALECTS if dialect is None else (dialect,):
                name = (
                    ("ghm_c_loss" if lo == "c" else "ghm_r_loss")
                    if backend == "jax"
                    else ("GHMCLoss" if lo == "c" else "GHMRLoss")
                )
                targets.append(
                    Target(
                        f"{module}.{name}(dialect={d!r})",
                        lo,
                        bundled_port(backend, lo, d),
                        f"from ghm_conformance.targets import bundled_port\n"
                        f"make_port = bundled_port({backend!r}, {lo!r}, {d!r})",
                        expected_dialect=d,
                    )
                )
    return targets, skipped


class TargetError(Exception):
    """A usage error: the target cannot be imported or is not a port factory."""


def load_target(
    spec: str, loss_kind: str, *, class_index: bool = False, label_weight: bool = True, anchor_weights: bool = False
) -> Target:
    """``package.module:make_port``, imported with the current directory on the path (as
    ``python -m`` does). ``class_index`` / ``label_weight=False`` declare what the port's step
    takes (``--targets class-index``, ``--no-label-weight``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"target must look like 'package.module:make_port', got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except SystemExit as e:  # a module that exits at import is no port
        raise TargetError(f"importing {module_name!r} called sys.exit({e.code!r})") from None
    except BaseException as e:  # noqa: BLE001 - any import failure is a usage error
        raise TargetError(f"cannot import {module_name!r}: {type(e).__name__}: {e}") from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"{spec} is not callable: expected make_port(*, bins, momentum, **hyper)")
    head = attr.split(".")[0]
    import_line = f"from {module_name} import {head}\nmake_port = {attr}"
    make_port = cast(PortFactory, obj)  # callable; the rest is the protocol, which the kit's probe checks
    if class_index and not getattr(make_port, "class_index", False):  # an adapter's factory may declare it already
        make_port = with_class_index_targets(make_port)
        import_line += (
            "\nfrom ghm_conformance.protocol import with_class_index_targets\n"
            "make_port = with_class_index_targets(make_port)"
        )
    if anchor_weights and not getattr(make_port, "anchor_weights", False):
        make_port = with_anchor_weights(make_port)
        import_line += (
            "\nfrom ghm_conformance.protocol import with_anchor_weights\nmake_port = with_anchor_weights(make_port)"
        )
    if not label_weight:
        make_port = _without_label_weight(make_port)
        import_line += (
            "\nfrom ghm_conformance.targets import _without_label_weight\nmake_port = _without_label_weight(make_port)"
        )
    return Target(spec, loss_kind, make_port, import_line)


def _without_label_weight(make_port: PortFactory) -> PortFactory:
    """Declare that the port's step takes (pred, target) only."""

    def factory(**kw):
        return make_port(**kw)

    declared = declaring(factory)
    declared.label_weight = False
    declared.class_index = getattr(make_port, "class_index", False)
    declared.anchor_weights = getattr(make_port, "anchor_weights", False)
    declared.framework = getattr(make_port, "framework", None)
    return factory
