"""Adapters for public GHM ports, one module per source file, for the census of ports
(``python -m ghm_conformance.census --sources DIR``, docs/ports.md).

Each adapter names where its port lives (repository, commit, path; its docstring says how to
download it), loads the file from ``$GHM_PORT_SOURCES/<owner>/<repo>/<path>`` with only the
load-time patches it lists (stub modules for a framework's registry or utilities, TF1 idioms),
and exposes one port factory per way to call it. None of the ports' code is in this project;
this folder is not part of the installed package.

    GHM_PORT_SOURCES=DIR ghm-conformance ports.mmdet_2x:ghmc --loss c
"""
