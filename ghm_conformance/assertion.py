"""The kit inside a port author's own test suite (array-api-tests is the model):

    # tests/test_ghm_conformance.py, in the port's repository
    from ghm_conformance import assert_conforms, from_torch_module
    from mypkg.losses import GHMC

    make_port = from_torch_module(lambda bins, momentum: GHMC(bins=bins, momentum=momentum))

    def test_ghmc_conforms_to_the_reference():
        assert_conforms(make_port, loss="c", dialect="mmdet")

Same catalogue, verdicts and determinism as the ``ghm-conformance`` CLI (and its defaults):
passes where the CLI exits 0 (robustness notes do not fail, unless ``strict``); otherwise
raises AssertionError carrying the verdict and, for every failing property, its minimal
counterexample and a repro snippet.
"""

from __future__ import annotations

import sys

from .cli import DEFAULT_TIMEOUT, FIRST_CALL_TIMEOUT
from .protocol import PortFactory
from .repro import snippet
from .runner import Report, run_catalogue
from .verdict import ERROR, FAILED, ROBUSTNESS


def assert_conforms(
    make_port: PortFactory,
    *,
    loss: str = "c",
    dialect: str | None = None,
    strict: bool = False,
    max_examples: int = 25,
    seed: int | None = None,
    large: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    import_line: str | None = None,
) -> Report:
    """Check ``make_port`` (spec.md section 9) and return the report, or raise AssertionError.

    Args:
        make_port: the port factory (``from_torch_module(...)``, ``from_keras_loss(...)``, or your own).
        loss: "c" (GHM-C) or "r" (GHM-R). Default: "c".
        dialect: judge in "paper" or "mmdet" only. Default: None (detect it).
        strict: robustness notes fail too. Default: False.
        max_examples: Hypothesis examples per property. Default: 25.
        seed: a random seed. Default: None (deterministic search).
        large: also one call past 2^24 entries (about a minute and 1-3 GB). Default: False.
        timeout: seconds one call may take (the first: 120). Default: 10.
        import_line: how the repro snippets get ``make_port``. Default: found from where
            ``make_port`` is defined, or the calling module's global bound to it.
    """
    report = run_catalogue(
        make_port,
        loss,
        dialect=dialect,
        max_examples=max_examples,
        seed=seed,
        large=large,
        timeout=timeout,
        first_timeout=max(FIRST_CALL_TIMEOUT, timeout),
    )
    if report.conforms(strict):
        return report
    raise AssertionError(
        failure_message(report, import_line or _import_line(make_port, sys._getframe(1).f_globals), strict)
    )


def failure_message(report: Report, import_line: str, strict: bool = False) -> str:
    """The verdict, then each failing property's message, counterexample size and repro."""
    v = report.verdict
    loss = f"GHM-{report.loss_kind.upper()}"
    if v.passed and strict and v.notes:
        lines = [
            f"the {loss} port conforms to the {v.label} dialect, but strict=True makes its robustness notes "
            f"fail: {'; '.join(v.notes)}"
        ]
    else:
        lines = [f"the {loss} port does not conform: {v.summary} ({v.reason})"]
    if report.port.hint:
        lines.append(f"hint: {report.port.hint}")
    if report.ended_early:
        lines.append(f"the run ended early: {report.ended_early}")
    for r in report.counted_rows():
        failing = r.status == ERROR or (r.status == FAILED and (r.property.kind != ROBUSTNESS or strict))
        if not failing:
            continue
        lines += ["", f"{r.name} {r.status}: {r.property.title}"]
        if r.counterexample is None:
            lines.append(f"  {r.note}")
            continue
        case = r.counterexample.case
        lines += [
            f"  {r.counterexample.outcome.message}",
            f"  counterexample: {case.describe()}",
            "  repro (prints every call and the comparison that fails):",
            "",
        ]
        code = snippet(r.property.id, r.dialect or v.judged_in, case, import_line)
        lines += ["    " + line if line else line for line in code.rstrip().splitlines()]
    return "\n".join(lines)


def _import_line(make_port, frame_globals: dict) -> str:
    """Python that binds ``make_port`` in a fresh interpreter, from where the user defined it: its
    own module-level name; else the name another importable module (not the calling test module)
    binds it to; else the calling module's global. ``make_port`` is bound once, without a no-op
    ``make_port = make_port``."""
    caller = frame_globals.get("__name__")

    def line(module: str, name: str) -> str:
        return f"from {module} import {name}" + ("" if name == "make_port" else f"\nmake_port = {name}")

    module, name = getattr(make_port, "__module__", None), getattr(make_port, "__qualname__", "")
    if module and name and "<" not in name and module != "__main__":
        head = name.split(".")[0]
        return line(module, head) if head == name else f"from {module} import {head}\nmake_port = {name}"
    for where in ([module] if module else []) + [m for m in list(sys.modules) if m not in (module, caller)]:
        mod = sys.modules.get(where)
        if where in (None, "__main__") or mod is None or where.startswith(("test_", "conftest")):
            continue
        bound = [n for n, v in list(getattr(mod, "__dict__", {}).items()) if v is make_port and not n.startswith("_")]
        if bound:
            return line(where, bound[0])
    for global_name, value in frame_globals.items():
        if value is make_port and caller and caller != "__main__" and caller in sys.modules:
            return line(caller, global_name)
    return "make_port = ...  # your port factory: pass import_line= to assert_conforms to fill this in"
