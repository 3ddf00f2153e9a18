"""matplotlib, imported for the figures only (an optional extra: ``pip install -e '.[plot]'``)."""

from __future__ import annotations

import sys


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display), or exit with the install command."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("the figures need matplotlib: pip install -e '.[plot]'")
    return plt
