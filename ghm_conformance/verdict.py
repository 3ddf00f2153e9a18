"""The verdict from the property rows: which dialect the port's values follow (its semantics) and,
apart from that, which properties it fails (its faults). A pure function, tested by a table.

    dialect: mmdet; fails: all_masked
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ghm_args import DIALECTS

PASSED, FAILED, NOT_APPLICABLE, ERROR = "passed", "failed", "not applicable", "error"
# The rows that say which semantics a port follows (the others are properties of any port).
SEMANTIC_MOMENTUM = ("ema", "ema_empty")


@dataclass(frozen=True)
class Row:
    property: str
    dialect: str | None  # the dialect the row was judged in; None for dialect-free properties
    status: str


@dataclass
class Verdict:
    dialect: str  # "paper", "mmdet" or "neither"
    label: str  # the dialect with its momentum qualifier, e.g. "mmdet (without momentum only)"
    reason: str
    judged_in: str  # the dialect whose rows count (the closest one when none matches)
    faults: list[str] = field(default_factory=list)  # counted rows that failed or errored
    passed: bool = False

    @property
    def summary(self) -> str:
        return f"dialect: {self.label}" + (f"; fails: {', '.join(self.faults)}" if self.faults else "")


def counted(rows: list[Row], judged_in: str) -> list[Row]:
    """The rows that count towards the verdict (the other dialect's rows only inform)."""
    return [r for r in rows if r.dialect in (None, judged_in)]


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
        judged_in, dialect = matches[0], matches[0]
        momentum = [status.get((p, judged_in)) for p in SEMANTIC_MOMENTUM]
        if FAILED in momentum or ERROR in momentum:
            label, reason = f"{dialect} (without momentum only)", f"'value[{dialect}]' passes but an EMA property fails"
        elif status.get(("ema", judged_in)) == NOT_APPLICABLE:
            label, reason = f"{dialect} (momentum not supported by the port)", \
                f"'value[{dialect}]' passes; the EMA properties are not applicable"
        else:
            label, reason = dialect, f"'value[{dialect}]' and the EMA properties pass"
    else:
        judged_in = max(candidates, key=passes)  # report its failures: the most useful comparison
        dialect = label = "neither"
        reason = f"'value' fails against the {' and the '.join(candidates)} reference; rows judged against {judged_in!r}"
    faults = [r.property for r in counted(rows, judged_in) if r.status in (FAILED, ERROR)]
    return Verdict(dialect, label, reason, judged_in, faults, passed=bool(matches) and not faults)
