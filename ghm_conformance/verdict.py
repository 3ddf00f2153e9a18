"""The verdict from the property rows: which dialect the port's values follow (its semantics) and,
apart from that, its conformance failures (faults) and robustness notes. A pure function, tested
by a table.

    conforms: mmdet; notes: reads masked values (NaN there propagates)
    dialect: mmdet; fails: all_masked

A *conformance* property judges the math on the domain spec.md defines for a port; failing one
is a fault (exit status 1). A *robustness* property judges behaviour outside that domain that
this project's losses promise but a port may legitimately lack (reading NaN held by masked
entries); failing one is a note (exit status 0, 1 with ``--strict``). spec.md section 9.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ghm_args import DIALECTS

PASSED, FAILED, NOT_APPLICABLE, ERROR = "passed", "failed", "not applicable", "error"
CONFORMANCE, ROBUSTNESS = "conformance", "robustness"
# The rows that say which semantics a port follows (the others are properties of any port).
SEMANTIC_MOMENTUM = ("ema", "ema_empty")
# The reference rows besides 'value' that tell the dialects apart (region normalization, EMA):
# they name the dialect of a port whose 'value' fails only in a narrow input class.
TELLING_APART = ("ema", "ema_empty", "saturated", "scale")


@dataclass(frozen=True)
class Row:
    property: str
    dialect: str | None  # the dialect the row was judged in; None for dialect-free properties
    status: str
    kind: str = CONFORMANCE
    note: str = ""  # for a failed robustness row: what the port does, in a user's words
    input_class: str = ""  # a failed row's narrow input class ("the gradient at pred = 0 exactly"), "" if none
    confirmed: bool = False  # the failure is shown to be confined to that class


@dataclass
class Verdict:
    dialect: str  # "paper", "mmdet" or "neither"
    label: str  # the dialect with its momentum qualifier, e.g. "mmdet (without momentum only)"
    reason: str
    judged_in: str  # the dialect whose rows count (the closest one when none matches)
    faults: list[str] = field(default_factory=list)  # counted conformance rows that failed or errored
    notes: list[str] = field(default_factory=list)  # counted robustness rows that failed, in words
    passed: bool = False  # a dialect matches and no fault: the port conforms
    except_for: str = ""  # the narrow input class outside which the port matches its dialect ("" if none)
    classes: dict = field(default_factory=dict)  # fault -> its narrow input class, when it has one

    def conforms(self, strict: bool = False) -> bool:
        """What the exit status follows: no fault (and, with ``strict``, no note either)."""
        return self.passed and not (strict and self.notes)

    @property
    def summary(self) -> str:
        head = f"conforms: {self.label}" if self.passed else f"dialect: {self.label}"
        named = [
            f"{f} ({self.classes[f]})" if self.classes.get(f) and self.classes[f] != self.except_for else f
            for f in self.faults
        ]
        fails = f"; fails: {', '.join(named)}" if self.faults else ""
        notes = f"; notes: {'; '.join(self.notes)}" if self.notes else ""
        return head + fails + notes


def counted(rows: list[Row], judged_in: str) -> list[Row]:
    """The rows that count towards the verdict (the other dialect's rows only inform)."""
    return [r for r in rows if r.dialect in (None, judged_in)]


def _label(status: dict, dialect: str) -> tuple[str, str]:
    momentum = [status.get((p, dialect)) for p in SEMANTIC_MOMENTUM]
    if FAILED in momentum or ERROR in momentum:
        return f"{dialect} (without momentum only)", f"'value[{dialect}]' passes but an EMA property fails"
    if status.get(("ema", dialect)) == NOT_APPLICABLE:
        return (
            f"{dialect} (momentum not supported by the port)",
            f"'value[{dialect}]' passes; the EMA properties are not applicable",
        )
    return dialect, f"'value[{dialect}]' and the EMA properties pass"


def _narrow_class(rows: list[Row], dialect: str) -> str:
    """The confirmed narrow class of 'value[dialect]''s failure, when every other failing reference
    row of that dialect fails in the same class, or fails in every dialect alike (a fault of its
    own, which says nothing of the dialect and stays listed); "" otherwise."""
    value = next((r for r in rows if r.property == "value" and r.dialect == dialect), None)
    if value is None or value.status != FAILED or not value.confirmed or not value.input_class:
        return ""
    bad = (FAILED, ERROR)

    def fails_everywhere(prop: str) -> bool:
        return all(r.status in bad for r in rows if r.property == prop and r.dialect is not None)

    others = [r for r in rows if r.dialect == dialect and r.property in TELLING_APART and r.status in bad]
    return (
        value.input_class
        if all(r.input_class == value.input_class or fails_everywhere(r.property) for r in others)
        else ""
    )


def _telling_apart_passes(rows: list[Row], dialect: str) -> int:
    return sum(r.status == PASSED for r in rows if r.dialect == dialect and r.property in TELLING_APART)


def _except(rows: list[Row], candidates: tuple[str, ...]) -> tuple[str, str]:
    """(dialect, class) of a port that matches one dialect everywhere but in a narrow input class,
    told apart from the other dialect by the rows that differ between dialects; ("", "") if none."""
    narrow = {d: _narrow_class(rows, d) for d in candidates}
    named = [d for d in candidates if narrow[d]]
    for d in named:
        rivals = [o for o in candidates if o != d]
        passes = _telling_apart_passes(rows, d)
        if all(not narrow[o] or passes > _telling_apart_passes(rows, o) for o in rivals) and all(
            passes >= _telling_apart_passes(rows, o) for o in rivals
        ):
            return d, narrow[d]
    return "", ""


def decide(rows: list[Row], forced: str | None = None) -> Verdict:
    """``forced``: the dialect given on the command line (only it is tried)."""
    status = {(r.property, r.dialect): r.status for r in rows}
    candidates = DIALECTS if forced is None else (forced,)

    def passes(d: str) -> int:
        return sum(r.status == PASSED for r in rows if r.dialect == d)

    matches = [d for d in candidates if status.get(("value", d)) == PASSED]
    if len(matches) > 1:  # 'value' could not tell them apart: let the other reference rows decide
        matches.sort(key=passes, reverse=True)
    if matches:
        judged_in = dialect = matches[0]
        label, reason = _label(status, dialect)
    else:
        named, narrow = _except(rows, candidates)
        if named:
            judged_in = dialect = named
            label = f"{named} except {narrow}"
            if status.get(("ema", named)) == NOT_APPLICABLE:
                label += " (momentum not supported by the port)"
            reason = (
                f"'value[{named}]' fails only for {narrow}, and the rows that tell the dialects apart "
                f"({', '.join(TELLING_APART)}) side with {named!r}"
            )
        else:
            judged_in = max(candidates, key=passes)  # report its failures: the most useful comparison
            dialect = label = "neither"
            reason = (
                f"'value' fails against the {' and the '.join(candidates)} reference; rows judged against {judged_in!r}"
            )
            narrow = ""
    rows_in = counted(rows, judged_in)
    faults = [r.property for r in rows_in if r.status == ERROR or (r.status == FAILED and r.kind == CONFORMANCE)]
    notes = [r.note or r.property for r in rows_in if r.status == FAILED and r.kind == ROBUSTNESS]
    classes = {r.property: r.input_class for r in rows_in if r.property in faults and r.input_class and r.confirmed}
    return Verdict(
        dialect,
        label,
        reason,
        judged_in,
        faults,
        notes,
        passed=bool(matches) and not faults,
        except_for=narrow if not matches else "",
        classes=classes,
    )
