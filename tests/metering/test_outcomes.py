"""One definition of a failed request (gateway/metering/outcome.py) in the ledger, `gateway usage`,
the experiments' error_rate and Prometheus; end-user ids hashed in the ledger by default."""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import openai
import pytest

from gateway.metering.outcome import outcome
from tests.helpers import openai_client, run_cli, running_gateway, write_policies

GW = """
upstreams: {mock: {type: mock}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
  cut: {targets: [{upstream: mock, model: "echo?cut_after=3"}], retries: 0}
  down: {targets: [{upstream: mock, model: "echo?fail_status=503"}], retries: 0}
server: {watch_interval_s: 0}
metering: {users: %s}
"""
EXPERIMENTS = """
experiments:
  - name: cut-test
    models: [echo]
    unit: user
    variants:
      - {name: control, weight: 0.5}
      - {name: cutting, weight: 0.5, model: cut}
"""
LONG = "one two three four five six seven eight nine ten eleven twelve"


def test_outcome_rule():
    assert outcome(200, None) == "ok"
    assert outcome(200, "stream_cut") == "failed"  # headers were 200, the answer never completed
    assert outcome(502, "http_502") == "failed" and outcome(500, None) == "failed"
    assert outcome(429, "rpm") == "refused" and outcome(403, "blocked") == "refused"
    assert outcome(499, None) == "client_gone" and outcome(200, "client_disconnected") == "client_gone"


def _rows(ledger, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # the file exists a moment before its first migration commits
            with sqlite3.connect(ledger) as conn:
                rows = conn.execute("SELECT model, served_model, status, error, outcome, user_id FROM requests").fetchall()
        except sqlite3.OperationalError:
            rows = []
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"ledger did not reach {n} rows")


@pytest.fixture()
def env(tmp_path):
    policies = write_policies(tmp_path / "p", GW % "hash", experiments=EXPERIMENTS)
    ledger = tmp_path / "ledger.db"
    with running_gateway(policies, ledger=ledger) as gw:
        yield gw, policies, ledger


def stream_text(client, model, user):
    out = ""
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": LONG}],
                                                stream=True, user=user):
        if chunk.choices and chunk.choices[0].delta.content:
            out += chunk.choices[0].delta.content
    return out


def test_a_stream_cut_after_its_200_is_a_failure_everywhere(env):
    gw, policies, ledger = env
    client = openai_client(gw)
    cut = ok = 0
    for i in range(40):
        try:
            stream_text(client, "echo", f"user-{i}")
            ok += 1
        except openai.APIError:
            cut += 1
    assert cut and ok
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="down", messages=[{"role": "user", "content": "x"}])
    rows = _rows(ledger, 41)
    broken = [r for r in rows if r[3] == "stream_cut"]
    assert len(broken) == cut and all(r[2] == 200 and r[4] == "failed" for r in broken)
    # usage: errors count the cut streams and the 503; --by model keeps every row under the public name
    usage = {r["model"]: r for r in json.loads(run_cli("usage", "--ledger", str(ledger), "--by", "model",
                                                         "--format", "json").stdout)}
    # (the experiment's variant routes to the public model `cut`)
    assert usage["echo"]["requests"] + usage["cut"]["requests"] == 40 and usage["echo"]["errors"] == 0
    assert usage["cut"]["errors"] == cut and usage["down"]["errors"] == 1 and set(usage) == {"echo", "cut", "down"}
    served = {r["served"]: r for r in json.loads(run_cli("usage", "--ledger", str(ledger), "--by", "served",
                                                           "--format", "json").stdout)}
    assert served["echo?cut_after=3"]["errors"] == cut
    # experiments: the cutting variant's error_rate is what was cut
    report = httpx.get(gw.url + "/v1/experiments/cut-test").json()
    rate = next(r for r in report["comparisons"] if r["metric"] == "error_rate")
    assert rate["control"]["mean"] == 0
    assert round(rate["treatment"]["mean"] * rate["treatment"]["n"]) == cut
    # Prometheus: the same count
    metrics = httpx.get(gw.url + "/metrics").text
    line = next(x for x in metrics.splitlines()
                if x.startswith("gateway_request_failures_total") and 'kind="stream_cut"' in x)
    assert float(line.rsplit(" ", 1)[1]) == cut
    assert any(x.startswith("gateway_request_failures_total") and 'model="down"' in x for x in metrics.splitlines())


def test_end_user_ids_are_hashed_in_the_ledger(env):
    gw, _, ledger = env
    openai_client(gw).chat.completions.create(model="echo", user="alice@example.com",
                                              messages=[{"role": "user", "content": "x"}])
    (row,) = _rows(ledger, 1)
    assert row[5].startswith("u:") and "alice" not in row[5]


@pytest.mark.parametrize("mode, expect", [("raw", "alice@example.com"), ("omit", None)])
def test_end_user_storage_is_a_policy_choice(tmp_path, mode, expect):
    policies = write_policies(tmp_path / "p", GW % mode)
    ledger = tmp_path / "ledger.db"
    with running_gateway(policies, ledger=ledger) as gw:
        openai_client(gw).chat.completions.create(model="echo", user="alice@example.com",
                                                  messages=[{"role": "user", "content": "x"}])
        (row,) = _rows(ledger, 1)
    assert row[5] == expect
