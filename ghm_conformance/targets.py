"""What the kit can check: the bundled torch / tf losses (the default), or ``module:attr``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .protocol import PortFactory, from_keras_loss, from_torch_module


@dataclass
class Target:
    name: str
    loss: str
    make_port: PortFactory
    import_line: str  # how a repro snippet gets make_port
    expected_dialect: str | None = None  # the bundled ports know theirs


def bundled_port(backend: str, loss: str, dialect: str) -> PortFactory:
    """A port over this project's own loss: backend "torch" or "tf", loss "c" or "r"."""
    if backend == "torch":
        import impl_torch

        cls = impl_torch.GHMCLoss if loss == "c" else impl_torch.GHMRLoss
        return from_torch_module(lambda **kw: cls(dialect=dialect, **kw))
    import impl_tf

    cls = impl_tf.GHMCLoss if loss == "c" else impl_tf.GHMRLoss
    return from_keras_loss(lambda **kw: cls(dialect=dialect, **kw))


def bundled_targets(dialect: str | None = None, loss: str | None = None) -> tuple[list[Target], list[str]]:
    """The default: torch and tf, GHM-C and GHM-R, both dialects; and the backends skipped."""
    targets, skipped = [], []
    for backend, module in (("torch", "impl_torch"), ("tf", "impl_tf")):
        try:
            importlib.import_module(module)
        except ImportError as e:
            skipped.append(f"{module}: not importable ({e})")
            continue
        for lo in ("c", "r") if loss is None else (loss,):
            for d in ("paper", "mmdet") if dialect is None else (dialect,):
                cls = ("GHMCLoss" if lo == "c" else "GHMRLoss")
                targets.append(Target(
                    f"{module}.{cls}(dialect={d!r})", lo, bundled_port(backend, lo, d),
                    f"from ghm_conformance.targets import bundled_port\nmake_port = bundled_port({backend!r}, {lo!r}, {d!r})",
                    expected_dialect=d))
    return targets, skipped


class TargetError(Exception):
    """A usage error: the target cannot be imported or is not a port factory."""


def load_target(spec: str, loss: str) -> Target:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"target must look like 'package.module:make_port', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is a usage error
        raise TargetError(f"cannot import {module_name!r}: {type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"{spec} is not callable: expected make_port(*, bins, momentum, **hyper)")
    return Target(spec, loss, obj, f"from {module_name} import {attr.split('.')[0]}\nmake_port = {attr}")
