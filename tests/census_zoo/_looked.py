"""The census's own sections for the zoo stand-ins: what it looked at but could not run, and where."""

from ports._looked import Looked

NOT_RUN = (
    Looked("zoo/unrunnable", "zoo_port.cpp", "C++", "a stand-in for a port in another language", "no Python binding"),
)
WHERE = ("the zoo of tests/zoo.py (a stand-in for the search of public repositories)",)
