"""ghm-conformance: check any GHM port against the reference, name its dialect, and shrink
every disagreement to a minimal counterexample.

    from ghm_conformance import run_catalogue, from_torch_module
    report = run_catalogue(from_torch_module(MyGHMC), "c")
"""

from .properties import CATALOGUE, NotApplicable, Property
from .protocol import from_keras_loss, from_numpy_function, from_torch_module, reference_port
from .runner import FAILED, NOT_APPLICABLE, PASSED, Report, run_catalogue, run_property

__all__ = ["CATALOGUE", "FAILED", "NOT_APPLICABLE", "PASSED", "NotApplicable", "Property", "Report",
           "from_keras_loss", "from_numpy_function", "from_torch_module", "reference_port",
           "run_catalogue", "run_property"]
