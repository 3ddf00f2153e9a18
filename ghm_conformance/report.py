"""Render reports: Markdown (also what the CLI prints) and JSON, with the same content."""

from __future__ import annotations

import json
import math

import numpy as np

from .cases import Case
from .runner import FAILED, Counterexample, Report


def _num(v: float) -> str:
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def array_literal(a: np.ndarray) -> str:
    """A float32 array as the shortest exact literal: np.float32 of each number round-trips."""
    if a.ndim == 0:
        return _num(a)
    return "[" + ", ".join(array_literal(x) for x in a) + "]"


def _fmt_err(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.2e}"


def repro(target_import: str, case: Case, dialect: str) -> str:
    fn = "ghm_c" if case.loss == "c" else "ghm_r"
    hyper = f", mu={case.mu}" if case.loss == "r" else ""
    calls = ",\n    ".join(
        f"(f32({array_literal(c.pred)}), f32({array_literal(c.target)}), f32({array_literal(c.label_weight)}))"
        for c in case.calls)
    return (f"import numpy as np\n{target_import}\nfrom reference import {fn}\n\n"
            f"f32 = lambda a: np.array(a, dtype=np.float32)\n"
            f"calls = [\n    {calls},\n]\n"
            f"step = make_port(bins={case.bins}, momentum={case.momentum}{hyper})\n"
            f"state = None\n"
            f"for pred, target, label_weight in calls:\n"
            f"    r = {fn}(pred, target, label_weight, bins={case.bins}, momentum={case.momentum}{hyper}, "
            f"state=state, dialect={dialect!r})\n"
            f"    state = r.state\n"
            f"    print('port:', step(pred, target, label_weight), ' reference loss:', r.loss)\n")


def _example_json(ce: Counterexample, target_import: str, dialect: str) -> dict:
    case = ce.case
    return {
        "message": ce.outcome.message,
        "bins": case.bins, "momentum": case.momentum, "mu": case.mu,
        "calls": [{"pred": c.pred.tolist(), "target": c.target.tolist(), "label_weight": c.label_weight.tolist()}
                  for c in case.calls],
        "port": ce.outcome.port, "expected": ce.outcome.expected,
        "repro": repro(target_import, case, dialect),
    }


def to_json(reports: list[Report], imports: dict[str, str], exit_status: int, skipped: list[str]) -> dict:
    out = {"exit_status": exit_status, "skipped": skipped, "targets": []}
    for rep in reports:
        imp = imports[rep.target]
        d = rep.dialect or "paper"
        rows = []
        for r in rep.results:
            rd = r.dialect or d
            rows.append({
                "property": r.property.id, "title": r.property.title, "dialect": r.dialect,
                "counts": r in rep.deciding(), "status": r.status,
                "max_error": None if math.isinf(r.max_error) else r.max_error, "tolerance": r.property.tolerance,
                "examples": r.examples, "seconds": round(r.seconds, 3), "note": r.note,
                "counterexample": None if r.counterexample is None else _example_json(r.counterexample, imp, rd),
                "edge_cases": [_example_json(e, imp, rd) for e in r.edge_cases],
            })
        out["targets"].append({"target": rep.target, "loss": "GHM-" + rep.loss.upper(), "verdict": rep.verdict,
                               "verdict_reason": rep.verdict_reason, "passed": rep.passed,
                               "seconds": round(rep.seconds, 2), "properties": rows})
    return out


def to_markdown(doc: dict) -> str:
    lines = ["# GHM conformance report", ""]
    for s in doc["skipped"]:
        lines.append(f"- skipped {s}")
    for t in doc["targets"]:
        mark = "PASS" if t["passed"] else "FAIL"
        lines += ["", f"## {t['target']} ({t['loss']}): {mark}", "",
                  f"Dialect verdict: **{t['verdict']}** ({t['verdict_reason']}); {t['seconds']} s.", "",
                  "| property | dialect | status | max error | tolerance | inputs tried | note |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for p in t["properties"]:
            status = p["status"] if p["counts"] else f"{p['status']} (other dialect; informs the verdict)"
            if p["counts"] and p["status"] == FAILED:
                status = "**FAILED**"
            err = "inf" if p["max_error"] is None else f"{p['max_error']:.2e}"
            lines.append(f"| {p['property']}: {p['title']} | {p['dialect'] or 'both'} | {status} | {err} | "
                         f"{p['tolerance']:g} | {p['examples']} | {p['note']} |")
        for p in t["properties"]:
            ce = p["counterexample"]
            if ce is None or not p["counts"]:
                continue
            lines += ["", f"### {p['property']} failed: {p['title']}", "", ce["message"], "",
                      f"Minimal counterexample (bins={ce['bins']}, momentum={ce['momentum']}"
                      + (f", mu={ce['mu']}" if ce["mu"] is not None else "") + "):", ""]
            for i, c in enumerate(ce["calls"], 1):
                lines.append(f"- call {i}: pred={_lit(c['pred'])}, target={_lit(c['target'])}, "
                             f"label_weight={_lit(c['label_weight'])}")
            lines += ["", f"- port returned: {_brief(ce['port'])}", f"- expected: {_brief(ce['expected'])}", "",
                      "Repro:", "", "```python", ce["repro"].rstrip(), "```"]
        edges = [(p, e) for p in t["properties"] for e in p["edge_cases"]]
        if edges:
            lines += ["", "### Disagreements only at region edges (not failures)", "",
                      "These inputs hold a g within rounding of a region edge k/M, where two correct "
                      "implementations may legitimately disagree (spec.md section 8); the port matches "
                      "the reference once those entries may lie on either side.", ""]
            for p, e in edges:
                c = e["calls"][0]
                lines.append(f"- {p['property']}: bins={e['bins']}, pred={_lit(c['pred'])}, "
                             f"target={_lit(c['target'])}, label_weight={_lit(c['label_weight'])}: {e['message']}")
    lines += ["", f"Exit status: {doc['exit_status']}", ""]
    return "\n".join(lines)


def _lit(a) -> str:
    return array_literal(np.asarray(a, np.float32))


def _brief(calls: list) -> str:
    parts = []
    for c in calls:
        s = f"loss={c['loss']!r}"
        if c.get("grad") is not None:
            s += f", grad={_lit(c['grad'])}"
        parts.append(s)
    return "; ".join(parts) if parts else "(nothing)"


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=float)
