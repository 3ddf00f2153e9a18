"""Render reports: JSON, and Markdown (what the CLI prints) from the same document."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np

from .repro import array_literal, encode, fmt_float, snippet
from .runner import Counterexample, Report, status_text
from .verdict import ERROR, FAILED

JSON_INLINE = 256  # arrays with more entries are stored as a compressed blob (``repro.blob``)

HOW_TO_READ = (
    "conforms: the port's loss and gradient are the reference's in that dialect on the whole domain "
    "spec.md defines; fails: the conformance properties it breaks (exit 1); notes: behaviour outside "
    "that domain it lacks, e.g. NaN in masked entries (exit 0, 1 with --strict)"
)


def _array(a) -> list | dict | float | str:
    a = np.asarray(a)
    if a.size > JSON_INLINE:
        return {"shape": list(a.shape), "dtype": str(a.dtype), "blob": encode(a)}
    if a.ndim == 0:
        return _json_num(a)
    return [_array(row) for row in a]


def _json_num(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)


def _call_json(c, port: dict, want) -> dict:
    return {
        "pred": _array(c.pred),
        "target": _array(c.target),
        "label_weight": _array(c.label_weight),
        "port": port,
        "expected": want,
    }


def _run_json(run, comparisons: dict, r: int) -> dict:
    calls = []
    for i, (c, o) in enumerate(zip(run.calls, run.outputs)):
        cmp = comparisons.get((r, i))
        want = (
            None
            if cmp is None
            else {
                "loss": _json_num(cmp.expected.loss),
                "source": cmp.expected.source,
                "grad": None if cmp.expected.grad is None else _array(cmp.expected.grad),
                "agrees": cmp.passed,
            }
        )
        calls.append(
            _call_json(c, {"loss": _json_num(o.loss), "grad": None if o.grad is None else _array(o.grad)}, want)
        )
    if run.raised is not None and len(run.outputs) < len(run.calls):  # the call that raised; none after it
        calls.append(_call_json(run.calls[len(run.outputs)], {"raised": run.raised}, None))
    return {"label": run.label, "calls": calls}


def _example_json(ce: Counterexample, import_line: str, property_id: str, dialect: str) -> dict:
    case = ce.case
    return {
        "message": ce.outcome.message,
        "case": {
            "loss": "GHM-" + case.loss_kind.upper(),
            "bins": case.bins,
            "momentum": case.momentum,
            "mu": case.mu,
            "calls": len(case.calls),
            "entries": [c.size for c in case.calls],
        },
        "runs": [_run_json(run, ce.outcome.comparisons, r) for r, run in enumerate(ce.outcome.runs)],
        "repro": snippet(property_id, dialect, case, import_line),
    }


def _median_ms(times: list[float]) -> float | None:
    return round(statistics.median(times) * 1e3, 3) if times else None


def _row_json(rep: Report, r, counted: list, import_line: str) -> dict:
    dialect = r.dialect or rep.verdict.judged_in
    return {
        "property": r.property.id,
        "title": r.property.title,
        "dialect": r.dialect,
        "kind": r.property.kind,
        "counts": r in counted,
        "status": r.status,
        "shown": status_text(r, rep.verdict.judged_in),
        "max_error": None if math.isinf(r.max_error) else r.max_error,
        "tolerance": r.property.tolerance,
        "examples": r.examples,
        "seconds": round(r.seconds, 3),
        "median_call_ms": _median_ms(r.call_seconds),
        "note": r.note,
        "input_class": r.input_class,
        "class_confirmed": r.class_confirmed,
        "counterexample": None
        if r.counterexample is None
        else _example_json(r.counterexample, import_line, r.property.id, dialect),
        "edge_cases": [_example_json(e, import_line, r.property.id, dialect) for e in r.edge_cases],
    }


def _target_json(rep: Report, import_line: str, strict: bool) -> dict:
    counted = rep.counted_rows()
    all_calls = [t for r in rep.results for t in r.call_seconds]
    v = rep.verdict
    return {
        "target": rep.target,
        "loss": "GHM-" + rep.loss_kind.upper(),
        "passed": rep.conforms(strict),
        "verdict": {
            "dialect": v.dialect,
            "label": v.label,
            "summary": v.summary,
            "reason": v.reason,
            "faults": v.faults,
            "notes": v.notes,
            "judged_in": v.judged_in,
            "conforms": v.passed,
            "except_for": v.except_for,
            "classes": v.classes,
        },
        "hint": rep.port.hint,
        "ended_early": rep.ended_early,
        "seconds": round(rep.seconds, 2),
        "port": {
            "label_weight": rep.port.label_weight,
            "class_index": rep.port.class_index,
            "anchor_weights": rep.port.anchor_weights,
            "momentum": rep.port.supports_momentum,
            "gradient": rep.port.returns_grad,
        },
        "time_per_call": {
            "calls": len(all_calls),
            "median_ms": _median_ms(all_calls),
            "max_ms": round(max(all_calls) * 1e3, 3) if all_calls else None,
        },
        "scale": [
            {
                "property": r.property.id,
                "entries": r.measurements[0].entries,
                "measurements": [m.as_dict() for m in r.measurements],
            }
            for r in rep.results
            if r.measurements
        ],
        "port_output": rep.output,
        "properties": [_row_json(rep, r, counted, import_line) for r in rep.results],
    }


def to_json(
    reports: list[Report], imports: dict[str, str], exit_status: int, skipped: list[str], strict: bool = False
) -> dict:
    return {
        "exit_status": exit_status,
        "strict": strict,
        "skipped": skipped,
        "targets": [_target_json(rep, imports[rep.target], strict) for rep in reports],
    }


# ---------------------------------------------------------------- Markdown


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _header(t: dict) -> list[str]:
    v, timing = t["verdict"], t["time_per_call"]
    lines = [
        "",
        f"## {t['target']} ({t['loss']}): {'PASS' if t['passed'] else 'FAIL'}",
        "",
        f"Verdict: **{v['summary']}** ({v['reason']}); {t['seconds']:.1f} s, {timing['calls']} calls, "
        f"median {_ms(timing['median_ms'])} ms per call.",
    ]
    port = t["port"]
    missing = [
        what
        for what, ok in (
            ("label weights", port["label_weight"]),
            ("momentum", port["momentum"]),
            ("a gradient", port["gradient"]),
        )
        if not ok
    ]
    if missing or port["class_index"] or port["anchor_weights"]:
        lines += [
            "",
            "The port "
            + "; ".join(
                (["takes class indices (N,) with C = background"] if port["class_index"] else [])
                + (
                    ["takes one label weight per row (N,): rows are masked whole"]
                    if port["anchor_weights"] and not port["class_index"]
                    else []
                )
                + ([f"has no {', '.join(missing)}: the properties needing it are not applicable"] if missing else [])
            )
            + ".",
        ]
    if t["hint"]:
        lines += ["", f"Hint: {t['hint']}"]
    if t["ended_early"]:
        lines += ["", f"**The run ended early: {t['ended_early']}.**"]
    return lines


def _table(t: dict) -> list[str]:
    lines = [
        "",
        "| property | kind | dialect | status | max error | tolerance | inputs tried | ms per call | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in t["properties"]:
        shown = p["shown"]
        if p["counts"] and p["status"] in (FAILED, ERROR) and shown != "note":
            shown = f"**{p['status'].upper()}**"
        err = "inf" if p["max_error"] is None else f"{p['max_error']:.2e}"
        lines.append(
            f"| {p['property']}: {p['title']} | {p['kind']} | {p['dialect'] or 'both'} | {shown} | {err} | "
            f"{p['tolerance']:g} | {p['examples']} | {_ms(p['median_call_ms'])} | {p['note']} |"
        )
    return lines


def _scale(t: dict) -> list[str]:
    lines = []
    for s in t["scale"]:
        lines += [
            "",
            f"### Cost at {s['entries']:,} entries ({s['property']})",
            "",
            "Each loss measured the same way: a first call on a fresh instance (compilation and other "
            "first-call costs), then one call on another fresh instance, timed; the baseline is this "
            "project's loss in the port's own framework.",
            "",
            "| loss | seconds per call | first call (s, compilation included) | peak memory (MB above the level "
            "before the call) |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {m['name']} | {m['seconds']:.3g} | "
            f"{'-' if m.get('first_call_seconds') is None else format(m['first_call_seconds'], '.3g')} | "
            f"{'n/a' if m['peak_mb'] is None else m['peak_mb']} |"
            for m in s["measurements"]
        ]
    return lines


def _counterexamples(t: dict) -> list[str]:
    lines = []
    for p in t["properties"]:
        ce = p["counterexample"]
        if ce is None or not p["counts"]:
            continue
        case = ce["case"]
        what = "note" if p["shown"] == "note" else "failed"
        lines += [
            "",
            f"### {p['property']} {what}: {p['title']}",
            "",
            ce["message"],
            "",
            f"Minimal counterexample ({case['loss']}, bins={case['bins']}, momentum={case['momentum']}"
            + (f", mu={case['mu']}" if case["mu"] is not None else "")
            + "); every call as the port received it:",
            "",
        ]
        for run in ce["runs"]:
            lines.append(f"- run '{run['label']}' (a fresh instance):")
            for i, c in enumerate(run["calls"], 1):
                lines.append(
                    f"  - call {i}: pred={_lit(c['pred'])}, target={_lit(c['target'])}, "
                    f"label_weight={_lit(c['label_weight'])}"
                )
                lines.append(f"    - port {'' if 'raised' in c['port'] else 'returned: '}{_brief(c['port'])}")
                if c["expected"] is not None:
                    lines.append(f"    - expected ({c['expected']['source']}): {_brief(c['expected'])}")
        lines += [
            "",
            "Repro (prints every call and the comparison that fails; exit status 1 while it fails):",
            "",
            "```python",
            ce["repro"].rstrip(),
            "```",
        ]
    return lines


def _edges_and_output(t: dict) -> list[str]:
    lines = []
    edges = [(p, e) for p in t["properties"] for e in p["edge_cases"]]
    if edges:
        lines += [
            "",
            "### Disagreements only at region edges (not failures)",
            "",
            "These inputs hold a g within rounding (1e-5) of a region edge k/M, where two correct "
            "implementations may legitimately disagree (spec.md section 8); the port matches the reference "
            "once those entries may lie on either side. A g exactly on an edge is never excused.",
            "",
        ]
        for p, e in edges:
            c = e["runs"][0]["calls"][0]
            lines.append(
                f"- {p['property']}: bins={e['case']['bins']}, pred={_lit(c['pred'])}, "
                f"target={_lit(c['target'])}: {e['message']}"
            )
    if t["port_output"]:
        lines += ["", "### Output the port printed (captured)", "", "```", t["port_output"].rstrip()[-4000:], "```"]
    return lines


def to_markdown(doc: dict) -> str:
    lines = ["# GHM conformance report", "", f"How to read a verdict: {HOW_TO_READ}."]
    lines += [f"- skipped {s}" for s in doc["skipped"]]
    for t in doc["targets"]:
        lines += _header(t) + _table(t) + _scale(t) + _counterexamples(t) + _edges_and_output(t)
    if len(doc["targets"]) > 1:
        lines += summary_table(doc)
    lines += ["", f"Exit status: {doc['exit_status']}" + (" (--strict: notes count)" if doc.get("strict") else ""), ""]
    return "\n".join(lines)


def summary_table(doc: dict) -> list[str]:
    """One table of every target's verdict, at the end of a run of several targets."""
    lines = ["", "## Summary", "", "| target | loss | verdict | result |", "| --- | --- | --- | --- |"]
    for t in doc["targets"]:
        lines.append(
            f"| {t['target']} | {t['loss']} | {t['verdict']['summary']} | {'PASS' if t['passed'] else 'FAIL'} |"
        )
    return lines


def _lit(a) -> str:
    """A JSON array (NaN and Inf written as strings) as a float32 literal."""
    if isinstance(a, dict):
        return f"<{a['dtype']} array of shape {tuple(a['shape'])}>"
    return array_literal(np.vectorize(float, otypes=[np.float32])(np.asarray(a, dtype=object)))


def _brief(out: dict) -> str:
    if "raised" in out:
        return f"raised {out['raised']}"
    loss = out["loss"]
    s = f"loss={fmt_float(loss) if isinstance(loss, float) else loss}"
    if out.get("grad") is not None:
        s += f", grad={_lit(out['grad'])}"
    return s


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=float)
