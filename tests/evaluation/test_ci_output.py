"""`gateway eval run --junit FILE --markdown FILE`: the JUnit file as CI test reporters read it (checked
with junitparser, an independent reader, and against the Jenkins JUnit layout's required attributes),
and the Markdown summary for a pull-request comment or $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import time
from xml.etree import ElementTree as ET

from junitparser import Error, Failure, JUnitXml

from gateway.evaluation import ci_output
from gateway.evaluation.assertions import Outcome
from gateway.evaluation.client import Reply
from gateway.evaluation.runner import CaseResult
from gateway.evaluation.suite import Suite
from tests.evaluation.test_eval_cli import evalcli
from tests.helpers import REPO


def check_layout(path) -> ET.Element:
    """The attributes the Jenkins JUnit schema requires, and counts that add up."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    for ts in root.findall("testsuite"):
        for attr in ("name", "tests", "failures", "errors", "time", "timestamp"):
            assert ts.get(attr) is not None, (ts.get("name"), attr)
        cases = ts.findall("testcase")
        assert int(ts.get("tests")) == len(cases)
        assert int(ts.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(ts.get("errors")) == sum(c.find("error") is not None for c in cases)
        for c in cases:
            assert c.get("name") and c.get("classname") and float(c.get("time")) >= 0
            for bad in c.findall("failure") + c.findall("error"):
                assert bad.get("message") and bad.get("type")
    assert int(root.get("tests")) == sum(int(ts.get("tests")) for ts in root.findall("testsuite"))
    return root


def test_a_failing_suite_as_junit_and_markdown(tmp_path):
    junit, md = tmp_path / "eval.xml", tmp_path / "summary.md"
    r = evalcli(tmp_path / "state", "run", str(REPO / "evals/support-answer-regression.yaml"), "--junit", str(junit),
                "--markdown", str(md), "--no-progress")
    assert r.returncode == 1, r.stdout + r.stderr  # a gate failed
    check_layout(junit)
    xml = JUnitXml.fromfile(str(junit))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"support-answer-regression.production", "support-answer-regression.candidate",
                           "support-answer-regression.gates"}
    assert suites["support-answer-regression.production"].tests == 12
    assert suites["support-answer-regression.production"].failures == 0
    candidate = list(suites["support-answer-regression.candidate"])
    assert len(candidate) == 12 and all(c.classname == "support-answer-regression.candidate" for c in candidate)
    failures = [res for c in candidate for res in c.result if isinstance(res, Failure)]
    assert len(failures) == 12
    assert all(f.message.startswith("assertion ") and " failed" in f.message for f in failures)
    assert any("faithfulness failed (score" in (f.text or "") for f in failures)
    gates = list(suites["support-answer-regression.gates"])
    failed_gates = [g for g in gates if any(isinstance(res, Failure) for res in g.result)]
    assert len(gates) == 3 and len(failed_gates) == 3  # the three [FAIL] lines of the terminal report
    assert all(g.name.startswith("gate ") for g in gates)
    assert "vs production" in gates[0].name and "gate failed: pass_rate candidate 0.000" in gates[0].result[0].message
    text = md.read_text()
    assert text.startswith("### ❌ Eval `support-answer-regression`: failed")
    assert text.count("❌ FAIL") == 3 and "12 case(s) failed or errored" in text
    # appended, as $GITHUB_STEP_SUMMARY collects every step's summary
    again = evalcli(tmp_path / "state", "run", str(REPO / "evals/support-answer.yaml"), "--markdown", str(md),
                    "--no-progress")
    assert again.returncode == 0
    assert md.read_text().count("### ") == 2 and "### ✅ Eval `support-answer`: passed" in md.read_text()


def test_bad_output_paths_exit_2_before_running(tmp_path):
    r = evalcli(tmp_path / "state", "run", str(REPO / "evals/support-answer.yaml"), "--junit",
                str(tmp_path / "missing-dir" / "x.xml"))
    assert r.returncode == 2 and "--junit" in r.stderr and "existing directory" in r.stderr
    r = evalcli(tmp_path / "state", "run", str(REPO / "evals/support-answer.yaml"), "--markdown", str(tmp_path))
    assert r.returncode == 2 and "--markdown" in r.stderr


def _suite() -> Suite:
    return Suite.model_validate({"name": "s", "dataset": {"cases": [{"vars": {"q": "x"}}]},
                                 "targets": [{"name": "t", "model": "m"}],
                                 "assertions": [{"type": "contains", "value": "x"}]})


def test_answers_with_control_characters_and_markup_stay_well_formed(tmp_path):
    answer = "ok \x00\x1b[31m red ]]> <script>alert(1)</script> & \ufffe done"
    results = [
        CaseResult("t", "c1", answer, Reply(text=answer, latency_ms=12.5), [Outcome("contains", True)]),
        CaseResult("t", "c2\x07", "", Reply(error="upstream HTTP 503"), []),
        CaseResult("t", "c3", "x", Reply(text="x"), [Outcome("contains", None, reason="judge\x01 did not answer")]),
    ]
    path = tmp_path / "j.xml"
    path.write_text(ci_output.junit_xml(_suite(), results, [], run_id=None, interrupted=True, started=time.time()))
    root = check_layout(path)
    xml = JUnitXml.fromfile(str(path))
    [target, gates] = list(xml)
    cases = list(target)
    assert "<script>alert(1)</script>" in cases[0].system_out and "\x00" not in cases[0].system_out
    assert cases[1].name == "c2" and isinstance(cases[1].result[0], Error)
    assert "upstream HTTP 503" in cases[1].result[0].message
    assert "could not be evaluated" in cases[2].result[0].message
    assert [c.name for c in gates] == ["run"] and "interrupted" in list(gates)[0].result[0].message
    assert root.get("errors") == "3"
    md = ci_output.markdown(_suite(), {"targets": {}}, results, [], run_id=None, status="interrupted")
    assert md.startswith("### ⚠️") and "gates were not checked" in md and "upstream HTTP 503" in md
