"""Metering end to end: usage and cost per request, ledger rows, limits and budgets, /metrics."""

from __future__ import annotations

import sqlite3
import time

import httpx
import openai
import pytest

from gateway.auth import hash_key
from tests.helpers import openai_client, running_gateway, write_policies

GATEWAY = """
upstreams:
  mock: {type: mock}
  other: {type: mock}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
  unpriced: {targets: [{upstream: other, model: mystery-model}]}
  no-usage: {targets: [{upstream: mock, model: "echo?usage=missing"}]}
  bad-usage: {targets: [{upstream: mock, model: "echo?usage=invalid"}]}
  cut: {targets: [{upstream: mock, model: "echo?cut_after=4"}]}
  slow: {targets: [{upstream: mock, model: "echo?chunk_delay_ms=20"}]}
keys:
  - {name: plain, sha256: "%s"}
  - {name: rpm, sha256: "%s", limits: {requests_per_minute: 2}}
  - {name: budget, sha256: "%s", limits: {usd_per_day: 0.05}}
  - {name: a1, sha256: "%s", group: team-a}
  - {name: a2, sha256: "%s", group: team-a}
  - {name: ops, sha256: "%s", admin: true}
groups:
  team-a: {limits: {requests_per_minute: 3}}
server: {watch_interval_s: 0}
""" % tuple(hash_key(k) for k in ("k-plain", "k-rpm", "k-budget", "k-a1", "k-a2", "k-ops"))

# $1000 per 1M tokens on the mock: a short request costs about a cent, so budgets bite quickly.
PRICING = """
models: {}
upstreams:
  mock:
    default: {input: 1000, output: 1000, source: test, as_of: 2026-01-01}
"""

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture()
def setup(tmp_path):
    root = write_policies(tmp_path / "p", GATEWAY, pricing=PRICING)
    return root, tmp_path / "ledger.db"


def rows(path, expected, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with sqlite3.connect(path) as conn:
                conn.row_factory = sqlite3.Row
                got = [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]
        except sqlite3.OperationalError:
            got = []
        if len(got) >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_usage_cost_headers_gateway_object_and_ledger_row(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        raw = openai_client(gw, "k-plain").chat.completions.with_raw_response.create(model="echo", messages=MSG)
        out = raw.parse()
        info = out.model_extra["gateway"]
        cost = (out.usage.prompt_tokens + out.usage.completion_tokens) * 1000 / 1e6
        assert info["usage"]["source"] == "upstream" and info["cost_usd"] == pytest.approx(cost)
        assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(cost)
        [row] = rows(ledger, 1)
    assert (row["key"], row["model"], row["served_model"], row["upstream"], row["status"]) == (
        "plain", "echo", "echo", "mock", 200)
    assert (row["input_tokens"], row["output_tokens"], row["usage_source"]) == (
        out.usage.prompt_tokens, out.usage.completion_tokens, "upstream")
    assert row["cost_usd"] == pytest.approx(cost) and row["price_key"] == "mock/*"
    assert "hello" not in str(row)  # never the prompt text


def test_stream_usage_is_requested_upstream_but_hidden_unless_asked(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        client = openai_client(gw, "k-plain")
        chunks = list(client.chat.completions.create(model="echo", messages=MSG, stream=True))
        assert not any(c.usage for c in chunks)
        assert chunks[-1].model_extra["gateway"]["usage"]["source"] == "upstream"
        chunks = list(client.chat.completions.create(model="echo", messages=MSG, stream=True,
                                                     stream_options={"include_usage": True}))
        assert sum(1 for c in chunks if c.usage) == 1
        got = rows(ledger, 2)
    assert [r["usage_source"] for r in got] == ["upstream", "upstream"]
    assert got[0]["output_tokens"] == got[1]["output_tokens"] == 2


@pytest.mark.parametrize("model", ["no-usage", "bad-usage"])
def test_missing_or_invalid_upstream_usage_is_estimated(setup, model):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        client = openai_client(gw, "k-plain")
        out = client.chat.completions.create(model=model, messages=MSG)
        usage = out.model_extra["gateway"]["usage"]
        assert usage["source"] == "estimated" and usage["input_tokens"] == 9 and usage["output_tokens"] == 2
        chunks = list(client.chat.completions.create(model=model, messages=MSG, stream=True))
        assert chunks[-1].model_extra["gateway"]["usage"]["source"] == "estimated"
        assert [r["usage_source"] for r in rows(ledger, 2)] == ["estimated", "estimated"]


def test_cut_stream_records_partial_usage_as_estimated(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        with pytest.raises(openai.APIError):
            list(openai_client(gw, "k-plain").chat.completions.create(
                model="cut", messages=[{"role": "user", "content": "one two three four five six"}], stream=True))
        [row] = rows(ledger, 1)
    assert row["usage_source"] == "estimated" and row["error"] == "stream_cut"
    assert row["output_tokens"] == 3  # role chunk + "one" + " two" + " three" were generated before the cut


def test_client_disconnect_still_recorded(setup):
    root, ledger = setup
    words = " ".join(f"w{i}" for i in range(300))
    with running_gateway(root, ledger=ledger) as gw:
        body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]}
        with httpx.Client(timeout=10) as http, http.stream(
                "POST", gw.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k-plain"}) as r:
            lines = r.iter_lines()
            for _ in range(10):
                next(lines)
        [row] = rows(ledger, 1)
    assert row["usage_source"] == "estimated" and row["error"] == "client_disconnected"
    assert 0 < row["output_tokens"] < 300


def test_requests_per_minute_limit_and_group_limit(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        client = openai_client(gw, "k-rpm")
        client.chat.completions.create(model="echo", messages=MSG)
        client.chat.completions.create(model="echo", messages=MSG)
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model="echo", messages=MSG)
        assert e.value.code == "rate_limit_exceeded" and 1 <= int(e.value.response.headers["retry-after"]) <= 60
        openai_client(gw, "k-a1").chat.completions.create(model="echo", messages=MSG)
        openai_client(gw, "k-a2").chat.completions.create(model="echo", messages=MSG)
        openai_client(gw, "k-a1").chat.completions.create(model="echo", messages=MSG)
        with pytest.raises(openai.RateLimitError, match="group:team-a"):
            openai_client(gw, "k-a2").chat.completions.create(model="echo", messages=MSG)
        got = rows(ledger, 7)
    assert [r["status"] for r in got].count(429) == 2
    assert {r["error"] for r in got if r["status"] == 429} == {"rate_limit_exceeded"}


def test_budget_reached_mid_stream_finishes_stream_then_refuses(setup):
    root, ledger = setup
    long_prompt = " ".join(f"word{i}" for i in range(20))  # ~60 tokens in and out: ~$0.12, over the $0.05 budget
    with running_gateway(root, ledger=ledger) as gw:
        client = openai_client(gw, "k-budget")
        chunks = list(client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": long_prompt}], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == long_prompt
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model="echo", messages=MSG)
        assert e.value.code == "insufficient_quota" and "budget" in e.value.message
        assert int(e.value.response.headers["retry-after"]) > 0


def test_spend_survives_a_restart(setup):
    root, ledger = setup
    long_prompt = " ".join(f"word{i}" for i in range(20))
    with running_gateway(root, ledger=ledger) as gw:
        openai_client(gw, "k-budget").chat.completions.create(
            model="echo", messages=[{"role": "user", "content": long_prompt}])
    with running_gateway(root, ledger=ledger) as gw:  # a new process would do the same: rebuilt from the ledger
        with pytest.raises(openai.RateLimitError):
            openai_client(gw, "k-budget").chat.completions.create(model="echo", messages=MSG)


def test_unpriced_model_gets_null_cost_warning_and_metric(setup, caplog):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        client = openai_client(gw, "k-plain")
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(model="unpriced", messages=MSG)
        assert raw.headers["x-gateway-cost-usd"] == "unknown"
        assert raw.parse().model_extra["gateway"]["cost_usd"] is None
        metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer k-ops"}).text
        got = rows(ledger, 2)
    assert 'gateway_unpriced_requests_total{model="mystery-model"} 2.0' in metrics
    assert caplog.text.count("no price for model 'mystery-model'") == 1
    assert [r["cost_usd"] for r in got] == [None, None]


def test_metrics_endpoint(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        openai_client(gw, "k-plain").chat.completions.create(model="echo", messages=MSG)
        assert httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer k-plain"}).status_code == 403
        text = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer k-ops"}).text
    for needle in ('gateway_requests_total{endpoint="chat.completions",key="plain",model="echo",status="200"} 1.0',
                   'gateway_tokens_total{key="plain",kind="input",model="echo",source="upstream"} 9.0',
                   'gateway_cost_usd_total{key="plain",model="echo"}',
                   "gateway_request_duration_seconds_bucket", "gateway_overhead_seconds_bucket",
                   "gateway_ledger_write_errors_total 0.0"):
        assert needle in text, needle


def test_malformed_pricing_keeps_the_old_table(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        (root / "pricing.yaml").write_text(PRICING.replace("input: 1000", "input: -5"))
        r = httpx.post(gw.url + "/admin/reload", headers={"Authorization": "Bearer k-ops"})
        assert r.status_code == 422
        assert any("pricing.yaml:5" in p and "input" in p for p in r.json()["problems"]), r.json()
        out = openai_client(gw, "k-plain").chat.completions.create(model="echo", messages=MSG)
        assert out.model_extra["gateway"]["cost_usd"] > 0  # still the old price


def test_gateway_usage_report_table_json_csv(setup):
    import json

    from tests.helpers import run_cli

    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        for key in ("k-plain", "k-plain", "k-a1"):
            openai_client(gw, key).chat.completions.create(model="echo", messages=MSG)
        openai_client(gw, "k-plain").chat.completions.create(model="unpriced", messages=MSG)
        rows(ledger, 4)
    table = run_cli("usage", "--ledger", str(ledger), "--by", "key")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["key", "requests", "errors"]
    assert "TOTAL" in table.stdout and "plain" in table.stdout
    data = json.loads(run_cli("usage", "--ledger", str(ledger), "--by", "model", "--format", "json").stdout)
    by_model = {r["model"]: r for r in data}
    assert by_model["echo"]["requests"] == 3 and by_model["echo"]["cost_usd"] > 0
    assert by_model["unpriced"]["unpriced"] == 1 and by_model["unpriced"]["cost_usd"] is None  # the public name
    served = {r["served"]: r for r in json.loads(run_cli("usage", "--ledger", str(ledger), "--by", "served",
                                                         "--format", "json").stdout)}
    assert served["mystery-model"]["unpriced"] == 1 and served["mystery-model"]["cost_usd"] is None
    csv_out = run_cli("usage", "--ledger", str(ledger), "--by", "day", "--format", "csv").stdout
    assert csv_out.splitlines()[0].startswith("day,requests,errors")
    bad = run_cli("usage", "--ledger", str(ledger), "--since", "last tuesday")
    assert bad.returncode == 2 and "cannot read 'last tuesday'" in bad.stderr
    missing = run_cli("usage", "--ledger", str(root / "nope.db"))
    assert missing.returncode == 2 and "no ledger" in missing.stderr


def test_budget_key_cannot_use_an_unpriced_model(setup):
    root, ledger = setup
    with running_gateway(root, ledger=ledger) as gw:
        with pytest.raises(openai.PermissionDeniedError) as e:
            openai_client(gw, "k-budget").chat.completions.create(model="unpriced", messages=MSG)
        assert e.value.code == "unpriced_model_under_budget"
