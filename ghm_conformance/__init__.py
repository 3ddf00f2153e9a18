"""ghm-conformance: check any GHM port against the reference, name its dialect, and shrink every
disagreement to a minimal counterexample that replays.

    from ghm_conformance import run_catalogue, from_torch_module
    report = run_catalogue(from_torch_module(MyGHMC), "c")
    print(report.verdict.summary)          # e.g. "dialect: mmdet; fails: all_masked"
"""

from .properties import CATALOGUE, LARGE, NotApplicable, Property
from .protocol import (from_keras_loss, from_numpy_function, from_torch_function, from_torch_module, from_weights,
                       reference_port, with_class_index_targets)
from .repro import replay
from .runner import Report, UsageError, run_catalogue, run_property
from .verdict import ERROR, FAILED, NOT_APPLICABLE, PASSED

__all__ = ["CATALOGUE", "ERROR", "FAILED", "LARGE", "NOT_APPLICABLE", "PASSED", "NotApplicable", "Property", "Report",
           "UsageError", "from_keras_loss", "from_numpy_function", "from_torch_function", "from_torch_module",
           "from_weights", "reference_port", "replay", "run_catalogue", "run_property", "with_class_index_targets"]
