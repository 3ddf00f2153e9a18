"""Benchmarks of the fast GHM losses against the plain losses and the official-style loop:
``python -m benchmarks`` (see ``benchmarks/__main__.py`` and the README)."""
