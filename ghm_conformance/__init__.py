"""ghm-conformance: check any GHM port against the reference, name its dialect, and shrink every
disagreement to a minimal counterexample that replays.

    from ghm_conformance import run_catalogue, from_torch_module
    report = run_catalogue(from_torch_module(MyGHMC), "c")
    print(report.verdict.summary)          # e.g. "conforms: mmdet; notes: reads masked values (...)"

In a port's own test suite: ``assert_conforms(make_port, loss="c")`` (``assertion.py``).
"""

from .assertion import assert_conforms
from .outcome import NotApplicable
from .properties import CATALOGUE, LARGE, Property
from .protocol import (
    from_jax_function,
    from_keras_loss,
    from_numpy_function,
    from_torch_function,
    from_torch_module,
    from_weights,
    reference_port,
    with_anchor_weights,
    with_class_index_targets,
)
from .repro import replay
from .runner import Report, UsageError, run_catalogue, run_property
from .verdict import CONFORMANCE, ERROR, FAILED, NOT_APPLICABLE, PASSED, ROBUSTNESS

__all__ = [
    "CATALOGUE",
    "CONFORMANCE",
    "ERROR",
    "FAILED",
    "LARGE",
    "NOT_APPLICABLE",
    "PASSED",
    "ROBUSTNESS",
    "NotApplicable",
    "Property",
    "Report",
    "UsageError",
    "assert_conforms",
    "from_jax_function",
    "from_keras_loss",
    "from_numpy_function",
    "from_torch_function",
    "from_torch_module",
    "from_weights",
    "reference_port",
    "replay",
    "run_catalogue",
    "run_property",
    "with_anchor_weights",
    "with_class_index_targets",
]
