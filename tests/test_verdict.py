"""The verdict as a pure function of the property rows (ghm_conformance.verdict), by a table."""

import pytest

from ghm_conformance.verdict import ERROR, FAILED, PASSED, ROBUSTNESS, Row, decide
from ghm_conformance.verdict import NOT_APPLICABLE as NA

P, M = "paper", "mmdet"


def rows(**statuses):
    """rows(value=(paper_status, mmdet_status), masked=status, ...)"""
    out = []
    for prop, s in statuses.items():
        if isinstance(s, tuple):
            out += [Row(prop, P, s[0]), Row(prop, M, s[1])]
        else:
            out.append(Row(prop, None, s))
    return out


TABLE = [  # (rows, forced dialect, label, faults, passed)
    (
        rows(value=(PASSED, FAILED), ema=(PASSED, FAILED), ema_empty=(PASSED, FAILED), masked=PASSED),
        None,
        "paper",
        [],
        True,
    ),
    (
        rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED), all_masked=FAILED),
        None,
        "mmdet",
        ["all_masked"],
        False,
    ),
    (
        rows(value=(FAILED, PASSED), ema=(FAILED, FAILED), ema_empty=(FAILED, PASSED)),
        None,
        "mmdet (without momentum only)",
        ["ema"],
        False,
    ),
    (
        rows(value=(FAILED, PASSED), ema=(NA, NA), ema_empty=(NA, NA)),
        None,
        "mmdet (momentum not supported by the port)",
        [],
        True,
    ),
    # ema_empty not applicable for want of label weights does not mean "no momentum"
    (rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(NA, NA), masked=NA), None, "mmdet", [], True),
    (
        rows(value=(FAILED, FAILED), ema=(FAILED, PASSED), saturated=(PASSED, PASSED), masked=PASSED),
        None,
        "neither",
        ["value"],
        False,
    ),
    # both dialects pass 'value' (e.g. one region per batch): the other reference rows decide
    (rows(value=(PASSED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED)), None, "mmdet", [], True),
    (
        [Row("value", M, PASSED), Row("ema", M, PASSED), Row("ema_empty", M, PASSED), Row("scale", M, ERROR)],
        M,
        "mmdet",
        ["scale"],
        False,
    ),
    ([Row("value", P, FAILED), Row("ema", P, PASSED)], P, "neither", ["value"], False),
    # a failed robustness row is a note, not a fault; an errored one is still a fault
    (
        rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED))
        + [Row("masked_unread", None, FAILED, ROBUSTNESS, "reads masked values")],
        None,
        "mmdet",
        [],
        True,
    ),
    (
        rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED))
        + [Row("masked_unread", None, ERROR, ROBUSTNESS)],
        None,
        "mmdet",
        ["masked_unread"],
        False,
    ),
]


@pytest.mark.parametrize("table_rows, forced, label, faults, passed", TABLE)
def test_verdict_table(table_rows, forced, label, faults, passed):
    v = decide(table_rows, forced)
    assert (v.label, v.faults, v.passed) == (label, faults, passed), v.summary


def test_summary_names_dialect_and_faults_apart():
    v = decide(rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED), all_masked=FAILED))
    assert v.summary == "dialect: mmdet; fails: all_masked"


def test_summary_of_a_conforming_port_with_a_note_and_strict():
    note = Row("masked_unread", None, FAILED, ROBUSTNESS, "reads masked values (NaN/Inf there propagates)")
    v = decide(rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED)) + [note])
    assert v.summary == "conforms: mmdet; notes: reads masked values (NaN/Inf there propagates)"
    assert v.conforms() and not v.conforms(strict=True)
    failing = decide(
        rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED), all_masked=FAILED) + [note]
    )
    assert failing.summary == "dialect: mmdet; fails: all_masked; notes: reads masked values (NaN/Inf there propagates)"


# ---------------------------------------------------------------- a dialect "except" a narrow input class

GRAD0, EDGE = "the gradient at pred = 0 exactly", "g exactly on a region edge"


def narrow(prop, dialect, cls, confirmed=True):
    return Row(prop, dialect, FAILED, input_class=cls, confirmed=confirmed)


EXCEPT_TABLE = [  # (rows, label, dialect) : the failure stays a failure, the dialect is named
    # value fails in mmdet only at pred = 0 (confirmed); scale tells the dialects apart
    (
        [
            narrow("value", M, GRAD0),
            Row("value", P, FAILED),
            Row("scale", M, PASSED),
            Row("scale", P, FAILED),
            Row("ema", M, NA),
            Row("ema", P, NA),
        ],
        "mmdet except " + GRAD0 + " (momentum not supported by the port)",
        M,
    ),
    # the EMA rows fail in the same class: still mmdet except that class
    (
        [
            narrow("value", M, EDGE),
            Row("value", P, FAILED),
            narrow("ema", M, EDGE, False),
            Row("ema", P, FAILED),
            Row("saturated", M, PASSED),
            Row("saturated", P, FAILED),
        ],
        "mmdet except " + EDGE,
        M,
    ),
    # a reference row failing in every dialect alike (counted masked entries: ema_empty) says nothing of
    # the dialect: still named, and the row stays a fault
    (
        [
            narrow("value", M, GRAD0),
            Row("value", P, FAILED),
            narrow("ema", M, GRAD0),
            Row("ema", P, FAILED),
            Row("ema_empty", M, FAILED),
            Row("ema_empty", P, FAILED),
            Row("scale", M, PASSED),
            Row("scale", P, FAILED),
        ],
        "mmdet except " + GRAD0,
        M,
    ),
    # an unconfirmed class names no dialect
    (
        [narrow("value", M, EDGE, False), Row("value", P, FAILED), Row("scale", M, PASSED), Row("scale", P, FAILED)],
        "neither",
        "neither",
    ),
    # another reference row fails outside the class, in that dialect alone: no dialect
    (
        [narrow("value", M, GRAD0), Row("value", P, FAILED), Row("ema", M, FAILED), Row("ema", P, PASSED)],
        "neither",
        "neither",
    ),
    # both dialects narrow and nothing tells them apart: no dialect
    (
        [narrow("value", M, GRAD0), narrow("value", P, GRAD0), Row("scale", M, PASSED), Row("scale", P, PASSED)],
        "neither",
        "neither",
    ),
]


@pytest.mark.parametrize("table_rows, label, dialect", EXCEPT_TABLE)
def test_a_dialect_is_named_except_a_narrow_input_class(table_rows, label, dialect):
    v = decide(table_rows)
    assert (v.label, v.dialect) == (label, dialect), v.summary
    assert "value" in v.faults and not v.passed and not v.conforms(), "the failure stays a failure"


def test_the_summary_names_a_fault_s_input_class_unless_the_dialect_already_does():
    v = decide(
        [
            narrow("value", M, GRAD0),
            Row("value", P, FAILED),
            Row("scale", M, PASSED),
            Row("scale", P, FAILED),
            narrow("finite_diff", None, GRAD0),
            narrow("one_region", None, EDGE, False),
        ]
    )
    assert v.summary == f"dialect: mmdet except {GRAD0}; fails: value, finite_diff, one_region"
    w = decide([narrow("value", M, GRAD0, False), Row("value", P, FAILED), narrow("finite_diff", None, GRAD0)])
    assert w.summary == f"dialect: neither; fails: value, finite_diff ({GRAD0})", "only a confirmed class is named"
