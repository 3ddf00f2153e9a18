"""The verdict as a pure function of the property rows (ghm_conformance.verdict), by a table."""

import pytest

from ghm_conformance.verdict import ERROR, FAILED, NOT_APPLICABLE as NA, PASSED, ROBUSTNESS, Row, decide

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
    (rows(value=(PASSED, FAILED), ema=(PASSED, FAILED), ema_empty=(PASSED, FAILED), masked=PASSED),
     None, "paper", [], True),
    (rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED), all_masked=FAILED),
     None, "mmdet", ["all_masked"], False),
    (rows(value=(FAILED, PASSED), ema=(FAILED, FAILED), ema_empty=(FAILED, PASSED)),
     None, "mmdet (without momentum only)", ["ema"], False),
    (rows(value=(FAILED, PASSED), ema=(NA, NA), ema_empty=(NA, NA)),
     None, "mmdet (momentum not supported by the port)", [], True),
    # ema_empty not applicable for want of label weights does not mean "no momentum"
    (rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(NA, NA), masked=NA),
     None, "mmdet", [], True),
    (rows(value=(FAILED, FAILED), ema=(FAILED, PASSED), saturated=(PASSED, PASSED), masked=PASSED),
     None, "neither", ["value"], False),
    # both dialects pass 'value' (e.g. one region per batch): the other reference rows decide
    (rows(value=(PASSED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED)),
     None, "mmdet", [], True),
    ([Row("value", M, PASSED), Row("ema", M, PASSED), Row("ema_empty", M, PASSED), Row("scale", M, ERROR)],
     M, "mmdet", ["scale"], False),
    ([Row("value", P, FAILED), Row("ema", P, PASSED)], P, "neither", ["value"], False),
    # a failed robustness row is a note, not a fault; an errored one is still a fault
    (rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED))
     + [Row("masked_unread", None, FAILED, ROBUSTNESS, "reads masked values")], None, "mmdet", [], True),
    (rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED))
     + [Row("masked_unread", None, ERROR, ROBUSTNESS)], None, "mmdet", ["masked_unread"], False),
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
    failing = decide(rows(value=(FAILED, PASSED), ema=(FAILED, PASSED), ema_empty=(FAILED, PASSED),
                          all_masked=FAILED) + [note])
    assert failing.summary == "dialect: mmdet; fails: all_masked; notes: reads masked values (NaN/Inf there propagates)"
