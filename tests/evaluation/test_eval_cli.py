"""`gateway eval` end to end: the shipped suites, gates and exit codes, bad suites, judges that do not
answer JSON, failing upstreams, the cache, interrupts, run tracking and compare."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, gateway_cmd, run_cli

GATEWAY = """
upstreams: {mock: {type: mock}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
  broken: {targets: [{upstream: mock, model: "echo?fail_status=503"}], retries: 0}
  slow: {targets: [{upstream: mock, model: "echo?latency_ms=400"}]}
  always-a: {targets: [{upstream: mock, model: "fixed?text=%7B%22winner%22%3A+%22A%22%7D"}]}
server: {watch_interval_s: 0}
"""


def evalcli(state: Path, *args: str, policies: Path | None = None, timeout: float = 300):
    extra = ["--policies", str(policies)] if policies else []
    return run_cli("eval", "--state-dir", str(state), *extra, *args, timeout=timeout)


@pytest.fixture
def policies(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    (root / "gateway.yaml").write_text(GATEWAY)
    (root / "default.yaml").write_text("request: []\n")
    return root


def suite(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_suite_passes_and_the_worse_prompt_fails_its_gates(tmp_path):
    ok = evalcli(tmp_path / "state", "run", str(REPO / "evals/support-answer.yaml"), "--json", str(tmp_path / "r.json"),
                 "--html", str(tmp_path / "r.html"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[PASS] pass_rate staging 1.000 vs production 1.000" in ok.stdout
    assert "judge calibration [cites-source] vs human labels: n=24" in ok.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "passed" and report["targets"][0]["prompt_version"]["version"] == 1
    assert "<table>" in (tmp_path / "r.html").read_text()
    bad = evalcli(tmp_path / "state", "run", str(REPO / "evals/support-answer-regression.yaml"))
    assert bad.returncode == 1
    assert "[FAIL] pass_rate candidate 0.000 vs production 1.000 on 12 paired cases" in bad.stdout
    runs = evalcli(tmp_path / "state", "runs")
    assert "support-answer-regression" in runs.stdout and "failed" in runs.stdout


def test_unknown_prompts_models_and_variables_exit_2_with_the_list(tmp_path):
    s = suite(tmp_path, """
        name: bad
        dataset: {cases: [{vars: {question: hi}}, {vars: {wrong: 1}}]}
        targets:
          - {name: a, prompt: "nope:production", model: mock-echo}
          - {name: b, prompt: "support-answer:production", model: no-such-model}
        assertions: [{type: contains, value: x}]
    """)
    r = evalcli(tmp_path / "state", "run", str(s))
    assert r.returncode == 2
    assert "target 'a'" in r.stderr and "nope" in r.stderr
    assert "unknown model 'no-such-model'" in r.stderr


@pytest.mark.parametrize("body, message", [
    ("dataset: {cases: []}\ntargets: [{name: a, model: echo}]\nassertions: [{type: contains, value: x}]", "no cases"),
    ("dataset: {cases: [{input: hi}]}\ntargets: [{name: a}]\nassertions: [{type: contains, value: x}]", "targets[0]"),
    ("dataset: {cases: [{input: hi}]}\ntargets: [{name: a, model: echo}]\nassertions: [{type: contains}]", "needs `value`"),
    ("dataset: {cases: [{input: hi}]}\ntargets: [{name: a, model: echo}]\nassertions: [{type: contains, value: x}]\n"
     "gates: [{metric: pass_rate, target: zz, min: 1}]", "gates[0].target: unknown target 'zz'"),
    ("dataset: {file: missing.jsonl}\ntargets: [{name: a, model: echo}]\nassertions: [{type: contains, value: x}]",
     "does not exist"),
])
def test_suite_errors_name_file_and_field(tmp_path, policies, body, message):
    s = suite(tmp_path, "name: x\n" + body)
    r = evalcli(tmp_path / "state", "run", str(s), policies=policies)
    assert r.returncode == 2 and message in r.stderr and str(s) in r.stderr


def test_invalid_judge_json_is_an_error_and_upstream_failures_are_counted(tmp_path, policies):
    s = suite(tmp_path, """
        name: errors
        dataset: {cases: [{id: one, input: hello}, {id: two, input: world}]}
        targets: [{name: good, model: echo}, {name: bad, model: broken}]
        assertions:
          - {type: contains, value: o}
          - {type: llm-rubric, judge: echo, rubric: "Is it polite?"}
        gates: [{metric: errors, target: bad, max: 0}]
    """)
    r = evalcli(tmp_path / "state", "run", str(s), "--json", str(tmp_path / "r.json"), policies=policies)
    assert r.returncode == 1  # the errors gate fails; the run itself completed
    doc = json.loads((tmp_path / "r.json").read_text())
    good = [x for x in doc["results"] if x["target"] == "good"]
    rubric = [a for x in good for a in x["assertions"] if a["assertion"] == "llm-rubric"]
    assert all(a["passed"] is None and "no JSON" in a["reason"] for a in rubric)  # not a pass, not a fail
    bad = [x for x in doc["results"] if x["target"] == "bad"]
    assert len(bad) == 2 and all(x["error"].startswith("HTTP 503: Upstream overloaded") for x in bad)
    assert doc["metrics"]["targets"]["bad"]["answer_errors"] == 2


def test_a_target_nobody_listens_at_stops_the_run_in_seconds_naming_the_url(tmp_path, policies):
    import socket

    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (policies / "gateway.yaml").write_text(GATEWAY + f"""
tabular:
  dead:
    url: http://127.0.0.1:{port}/predict
    features: {{x: {{type: number}}}}
""")
    cases = "".join(f"{{features: {{x: {i}}}, truth: 1}}, " for i in range(60))
    s = suite(tmp_path, f"""
        name: dead
        dataset: {{cases: [{cases}]}}
        targets: [{{name: prod, tabular: dead}}]
        assertions: [{{type: correct}}]
    """)
    t0 = time.monotonic()
    r = evalcli(tmp_path / "state", "run", str(s), policies=policies, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert time.monotonic() - t0 < 40  # 60 cases x (3 retries with backoff) took minutes before
    assert f"http://127.0.0.1:{port}/predict" in r.stderr and "refused connections" in r.stderr
    assert "Traceback" not in r.stderr


def test_progress_lines_without_a_terminal(tmp_path, policies):
    s = suite(tmp_path, """
        name: slowish
        concurrency: 1
        dataset: {cases: [""" + ", ".join(f"{{input: q{i}}}" for i in range(16)) + """]}
        targets: [{name: a, model: slow}]
        assertions: [{type: contains, value: q}]
    """)
    r = evalcli(tmp_path / "state", "run", str(s), "--no-cache", policies=policies)  # stderr is a pipe here
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("eval: ")]
    assert len(lines) >= 2 and "/16 answered" in lines[0] and "ETA" in lines[0], r.stderr
    assert "\r" not in r.stderr


def test_rerun_is_served_from_the_cache_unless_no_cache(tmp_path, policies):
    s = suite(tmp_path, """
        name: cached
        dataset: {cases: [{input: alpha}, {input: beta}, {input: gamma}]}
        targets: [{name: a, model: echo}]
        assertions: [{type: regex, value: "a$"}]
    """)
    first = evalcli(tmp_path / "state", "run", str(s), "--json", str(tmp_path / "1.json"), policies=policies)
    second = evalcli(tmp_path / "state", "run", str(s), "--json", str(tmp_path / "2.json"), policies=policies)
    third = evalcli(tmp_path / "state", "run", str(s), "--no-cache", "--json", str(tmp_path / "3.json"), policies=policies)
    assert first.returncode == second.returncode == third.returncode == 0
    cached = [json.loads((tmp_path / f"{i}.json").read_text())["metrics"]["targets"]["a"]["cached"] for i in (1, 2, 3)]
    assert cached == [0, 3, 0]


def test_ctrl_c_keeps_what_finished(tmp_path, policies):
    cases = "\n".join(json.dumps({"id": f"c{i}", "input": f"case {i}"}) for i in range(40))
    (tmp_path / "cases.jsonl").write_text(cases)
    s = suite(tmp_path, """
        name: slow
        dataset: {file: cases.jsonl}
        targets: [{name: a, model: slow}]
        assertions: [{type: contains, value: case}]
        concurrency: 2
    """)
    proc = subprocess.Popen(gateway_cmd("eval", "--state-dir", str(tmp_path / "state"), "--policies", str(policies),
                                        "run", str(s), "--no-progress"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell runs background jobs with SIGINT ignored, and children inherit that:
                            # give the run the default, as a terminal's Ctrl-C would find it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Interrupt once some answers are in (each is cached as it arrives), not after a fixed time: on a
    # loaded machine start-up alone can take longer, and a signal during the imports is not a run's.
    cache = tmp_path / "state" / "eval-cache"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not cache.is_dir() or sum(1 for _ in cache.rglob("*") if _.is_file()) < 3):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "INTERRUPTED" in out
    runs = evalcli(tmp_path / "state", "runs", policies=policies)
    assert "interrupted" in runs.stdout


def test_compare_shows_metric_deltas_and_changed_cases(tmp_path, policies):
    s = suite(tmp_path, """
        name: cmp
        dataset: {cases: [{id: x, input: apple}, {id: y, input: banana}]}
        targets: [{name: a, model: echo}]
        assertions: [{type: contains, value: an}]
    """)
    evalcli(tmp_path / "state", "run", str(s), policies=policies)
    s.write_text(s.read_text().replace("value: an", "value: pp"))
    evalcli(tmp_path / "state", "run", str(s), policies=policies)
    ids = [line.split()[0] for line in evalcli(tmp_path / "state", "runs").stdout.splitlines()[1:]]
    r = evalcli(tmp_path / "state", "compare", ids[1], ids[0])
    assert r.returncode == 0
    assert "pass rate" in r.stdout and "a / x: fail -> pass" in r.stdout and "a / y: pass -> fail" in r.stdout
    assert evalcli(tmp_path / "state", "compare", "nope", ids[0]).returncode == 2


def test_pairwise_judges_both_orders_so_position_bias_is_a_tie(tmp_path, policies):
    s = suite(tmp_path, """
        name: pairwise
        dataset: {cases: [{id: q1, input: "what is two plus two"}]}
        targets: [{name: base, model: echo}, {name: cand, model: echo, params: {temperature: 0.5}}]
        assertions: [{type: pairwise, judge: always-a, baseline: base}]
    """)
    r = evalcli(tmp_path / "state", "run", str(s), "--json", str(tmp_path / "r.json"), policies=policies)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    cand = next(x for x in doc["results"] if x["target"] == "cand")["assertions"][0]
    # The judge always says "A": candidate wins when shown first, loses when shown second -> tie.
    assert cand["score"] == 0.5 and cand["passed"] is True and cand["reason"].startswith("tie")


def test_a_running_gateway_can_be_used_by_url(tmp_path, policies):
    from tests.helpers import running_gateway

    s = suite(tmp_path, """
        name: remote
        dataset: {cases: [{input: hello remote}]}
        targets: [{name: a, model: echo}]
        assertions: [{type: equals, value: hello remote}]
    """)
    with running_gateway(policies) as gw:
        r = evalcli(tmp_path / "state", "run", str(s), "--gateway", gw.url)
    assert r.returncode == 0 and "100.0%" in r.stdout


def test_tabular_suites_gate_on_model_metrics_and_paired_regression(tmp_path):
    from gateway.tabular.example_model import build_app
    from tests.helpers import ServerThread

    server = ServerThread(build_app()).start()
    try:
        root = tmp_path / "policies"
        root.mkdir()
        features = ("{tenure_months: {type: number, min: 0}, monthly_spend: {type: number, min: 0}, "
                    "support_calls: {type: integer, min: 0}, plan: {type: category, values: [basic, pro, enterprise]}}")
        (root / "gateway.yaml").write_text(GATEWAY + f"""
tabular:
  churn: {{url: "{server.url}/predict", features: {features}}}
  churn-naive: {{url: "{server.url}/predict?variant=naive", features: {features}}}
""")
        (root / "default.yaml").write_text("request: []\n")
        ok = evalcli(tmp_path / "state", "run", str(REPO / "evals/churn-model.yaml"), policies=root)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "model production: n 400, accuracy 0.6825, auc 0.7051" in ok.stdout
        assert "[PASS] slice_gap[plan] of production" in ok.stdout
        bad = evalcli(tmp_path / "state", "run", str(REPO / "evals/churn-model-regression.yaml"), policies=root)
        assert bad.returncode == 1
        assert "[PASS] accuracy candidate 0.6675 vs production 0.6825" in bad.stdout  # small, not significant
        assert "[FAIL] auc candidate 0.6466 vs production 0.7051" in bad.stdout
        missing = suite(tmp_path, """
            name: t
            dataset: {cases: [{features: {tenure_months: 1}, truth: 1}]}
            targets: [{name: a, tabular: no-such-model}]
            assertions: [{type: correct}]
        """)
        r = evalcli(tmp_path / "state", "run", str(missing), policies=root)
        assert r.returncode == 2 and "unknown tabular model 'no-such-model'" in r.stderr
    finally:
        server.stop()


def test_gate_against_the_previous_run(tmp_path, policies):
    s = suite(tmp_path, """
        name: since-last
        dataset: {cases: [{id: a, input: apple}, {id: b, input: banana}, {id: c, input: cherry}]}
        targets: [{name: t, model: echo}]
        assertions: [{type: contains, value: a}]
        gates: [{metric: pass_rate, target: t, baseline_run: last, max_drop: 0.0, alpha: 0.9}]
    """)
    first = evalcli(tmp_path / "state", "run", str(s), policies=policies)
    assert first.returncode == 0 and "first run" in first.stdout
    s.write_text(s.read_text().replace("value: a}", "value: an}"))
    second = evalcli(tmp_path / "state", "run", str(s), policies=policies)
    assert second.returncode == 1 and "[FAIL] pass_rate of t since run" in second.stdout
    assert "1 newly failing" in second.stdout


def test_an_eval_run_keeps_off_the_shared_production_state(tmp_path, policies):
    """gateway.yaml shares Redis and PostgreSQL with production: the eval's own in-process gateway uses
    its own counters and a ledger in the eval state directory, and needs neither URL."""
    (policies / "gateway.yaml").write_text(GATEWAY + "state: {counters: redis, ledger: postgres}\n")
    s = suite(tmp_path, """
        name: private
        dataset: {cases: [{input: alpha}, {input: beta}]}
        targets: [{name: a, model: echo}]
        assertions: [{type: contains, value: a}]
    """)
    import os

    env_before = {k: os.environ.pop(k) for k in ("GATEWAY_REDIS_URL", "GATEWAY_POSTGRES_URL") if k in os.environ}
    try:
        r = evalcli(tmp_path / "state", "run", str(s), "--no-cache", policies=policies)
    finally:
        os.environ.update(env_before)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "state" / "ledger.db").is_file()
