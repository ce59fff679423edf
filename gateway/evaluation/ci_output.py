"""Eval results where CI looks: a JUnit XML file (`gateway eval run --junit FILE`), which GitHub
Actions test reporters, GitLab, Jenkins and Azure Pipelines render as test results, and a Markdown
summary (`--markdown FILE`) for a pull-request comment or `$GITHUB_STEP_SUMMARY`.

JUnit layout (the Jenkins xunit-plugin dialect every reader accepts): one <testsuite> per target with
one <testcase> per case (classname `<suite>.<target>`, name the case id, time its latency); a case
whose assertion failed has a <failure> with the assertion's message, a case whose answer or
assertion errored has an <error>; then a <testsuite> `<suite>.gates` with one <testcase> per gate.
Answers go into <system-out> (cut to 4,000 characters): the eval's own data, which its HTML report
shows as well.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from xml.etree import ElementTree as ET

from gateway.evaluation.report import GateResult
from gateway.evaluation.runner import CaseResult
from gateway.evaluation.suite import Suite

_OUT_CHARS = 4000


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters, even escaped: drop them (a model may emit any)."""
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20 and ch not in "\ufffe\uffff")


def _describe(o: Any) -> str:
    """One assertion outcome in words: failed or errored, its score, its reason."""
    state = "failed" if o.passed is False else "could not be evaluated"
    score = f" (score {o.score:.3f})" if o.score is not None else ""
    return f"{o.assertion} {state}{score}" + (f": {o.reason}" if o.reason else "")


def _case_element(suite: Suite, r: CaseResult) -> tuple[ET.Element, str]:
    """(<testcase>, "passed" | "failure" | "error")."""
    el = ET.Element("testcase", classname=f"{suite.name}.{r.target}", name=_clean(str(r.case_id)),
                    time=f"{max(r.reply.latency_ms, 0) / 1000:.3f}")
    if r.reply.error is not None:
        ET.SubElement(el, "error", message=_clean(f"the answer failed: {r.reply.error}"), type="answer_error")
        kind = "error"
    else:
        errored = [o for o in r.outcomes if o.passed is None]
        failed = [o for o in r.outcomes if o.passed is False]
        if errored:
            ET.SubElement(el, "error", message=_clean("assertion " + _describe(errored[0])),
                          type="assertion_error").text = _clean("\n".join(map(_describe, errored + failed)))
            kind = "error"
        elif failed:
            ET.SubElement(el, "failure", message=_clean("assertion " + _describe(failed[0])),
                          type="assertion").text = _clean("\n".join(map(_describe, failed)))
            kind = "failure"
        else:
            kind = "passed"
    if r.answer:
        out = ET.SubElement(el, "system-out")
        out.text = _clean(r.answer[:_OUT_CHARS] + ("\n[... cut]" if len(r.answer) > _OUT_CHARS else ""))
    return el, kind


def _suite_element(name: str, cases: list[tuple[ET.Element, str]], timestamp: str) -> ET.Element:
    el = ET.Element("testsuite", name=name, tests=str(len(cases)),
                    failures=str(sum(k == "failure" for _, k in cases)),
                    errors=str(sum(k == "error" for _, k in cases)), skipped="0",
                    time=f"{sum(float(c.get('time', 0)) for c, _ in cases):.3f}", timestamp=timestamp)
    el.extend(c for c, _ in cases)
    return el


def gate_name(i: int, g: GateResult) -> str:
    """A stable test name for a gate (its detail holds measured values, which change run to run)."""
    gate = g.gate
    what = gate.metric + (f"[{gate.assertion}]" if gate.assertion else "") + (f"[{gate.attribute}]" if gate.attribute else "")
    against = (f" vs {gate.baseline}" if gate.baseline else "") + (f" vs run {gate.baseline_run}" if gate.baseline_run else "")
    bounds = "".join(f" {op} {v:g}" for op, v in ((">=", gate.min), ("<=", gate.max)) if v is not None)
    drop = f" max_drop {gate.max_drop:g}" if gate.max_drop is not None else ""
    return f"gate {i + 1}: {what} of {gate.target}{against}{bounds}{drop}"


def junit_xml(suite: Suite, results: list[CaseResult], gates: list[GateResult], *, run_id: str | None,
              interrupted: bool, started: float) -> str:
    timestamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    root = ET.Element("testsuites", name=f"gateway eval {suite.name}")
    for target in [t.name for t in suite.targets]:
        cases = [_case_element(suite, r) for r in results if r.target == target]
        ts = _suite_element(f"{suite.name}.{target}", cases, timestamp)
        props = ET.Element("properties")
        for key, value in (("run_id", run_id), ("target", target)):
            if value:
                ET.SubElement(props, "property", name=key, value=str(value))
        ts.insert(0, props)
        root.append(ts)
    gate_cases = []
    for i, g in enumerate(gates):
        el = ET.Element("testcase", classname=f"{suite.name}.gates", name=_clean(gate_name(i, g)), time="0")
        if not g.passed:
            ET.SubElement(el, "failure", message=_clean(f"gate failed: {g.detail}"), type="gate")
        gate_cases.append((el, "passed" if g.passed else "failure"))
    if interrupted:
        el = ET.Element("testcase", classname=f"{suite.name}.gates", name="run", time="0")
        ET.SubElement(el, "error", message="the run was interrupted: gates were not checked", type="interrupted")
        gate_cases.append((el, "error"))
    root.append(_suite_element(f"{suite.name}.gates", gate_cases, timestamp))
    for attr in ("tests", "failures", "errors"):
        root.set(attr, str(sum(int(s.get(attr)) for s in root)))
    root.set("time", f"{sum(float(s.get('time')) for s in root):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(text: Any) -> str:
    """A table cell: no pipes or newlines, which would break the row."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def markdown(suite: Suite, m: dict[str, Any], results: list[CaseResult], gates: list[GateResult], *,
             run_id: str | None, status: str, max_failures: int = 20) -> str:
    icon = {"passed": "✅", "failed": "❌"}.get(status, "⚠️")
    lines = [f"### {icon} Eval `{_md(suite.name)}`: {status}" + (f" (run `{run_id}`)" if run_id else ""), ""]
    if gates:
        lines += ["| gate | result |", "|---|---|"]
        lines += [f"| {_md(g.detail)} | {'✅ pass' if g.passed else '❌ FAIL'} |" for g in gates]
        lines.append("")
    elif status == "interrupted":
        lines += ["The run was interrupted: gates were not checked.", ""]
    lines += ["| target | cases | pass rate | 95% CI | errors | p50 ms | cost USD |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, tm in m["targets"].items():
        p = tm["pass"]
        lines.append(f"| {_md(name)} | {tm['cases']} | {_pct(p['rate'])} | {_pct(p['ci95'][0])} to {_pct(p['ci95'][1])} "
                     f"| {tm['answer_errors'] + p['errors']} | {tm['latency_ms']['p50']:.1f} | {tm['cost_usd']['total']:.5f} |")
    lines += ["", "| assertion | " + " | ".join(_md(n) for n in m["targets"]) + " |",
              "|---|" + "---:|" * len(m["targets"])]
    for a in suite.assertions:
        lines.append(f"| {_md(a.label)} | " + " | ".join(_pct(tm["assertions"][a.label]["rate"])
                                                      for tm in m["targets"].values()) + " |")
    failing = [r for r in results if r.passed is not True]
    if failing:
        lines += ["", f"<details><summary>{len(failing)} case(s) failed or errored"
                      f"{f' (first {max_failures})' if len(failing) > max_failures else ''}</summary>", "",
                  "| target | case | why |", "|---|---|---|"]
        for r in failing[:max_failures]:
            if r.reply.error is not None:
                why = f"answer error: {r.reply.error}"
            else:
                why = "; ".join(_describe(o) for o in r.outcomes if o.passed is not True)
            lines.append(f"| {_md(r.target)} | {_md(r.case_id)} | {_md(why)[:300]} |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
