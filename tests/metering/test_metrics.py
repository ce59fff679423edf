"""What operators graph: upstream attempts by outcome, retries and fallbacks, time to first token,
bounded label values; and the Grafana dashboard only asks for metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import openai
import pytest

from gateway.auth import hash_key
from gateway.metering.metrics import Metrics
from tests.helpers import REPO, openai_client, running_gateway, write_policies

GATEWAY = """
upstreams:
  mock: {type: mock}
  spare: {type: mock}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
  flaky: {targets: [{upstream: mock, model: "echo?fail_status=503&fail_times=1"}], retries: 2,
          backoff: {base_s: 0.01}}
  failover: {targets: [{upstream: mock, model: "echo?fail_status=503"}, {upstream: spare, model: echo}],
             retries: 0}
keys:
  - {name: app, sha256: "%s"}
  - {name: ops, sha256: "%s", admin: true}
server: {watch_interval_s: 0}
""" % (hash_key("k-app"), hash_key("k-ops"))

MSG = [{"role": "user", "content": "hello there"}]
DASHBOARD = REPO / "deploy" / "grafana" / "gateway-dashboard.json"


def _metrics(gw) -> str:
    return httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer k-ops"}).text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name{labels}` (labels in any order), 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name):line.rindex("}")]))
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_attempts_retries_fallbacks_and_first_token(tmp_path):
    root = write_policies(tmp_path / "p", GATEWAY)
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        client = openai_client(gw, "k-app")
        client.chat.completions.create(model="flaky", messages=MSG)  # 503, then ok on a retry
        client.chat.completions.create(model="failover", messages=MSG)  # 503 on mock, then spare
        list(client.chat.completions.create(model="echo", messages=MSG, stream=True))
        text = _metrics(gw)
    count = "gateway_upstream_attempt_duration_seconds_count"
    assert _sample(text, count, upstream="mock", outcome="http_503") == 2
    assert _sample(text, count, upstream="mock", outcome="ok") == 2  # flaky's retry, the stream
    assert _sample(text, count, upstream="spare", outcome="ok") == 1
    assert _sample(text, "gateway_upstream_retries_total", upstream="mock") == 1
    assert _sample(text, "gateway_upstream_fallbacks_total", from_upstream="mock", to_upstream="spare") == 1
    assert _sample(text, "gateway_stream_first_token_seconds_count", model="echo") == 1


def test_a_model_name_a_client_made_up_is_not_a_label_value(tmp_path):
    root = write_policies(tmp_path / "p", GATEWAY)
    with running_gateway(root, ledger=tmp_path / "ledger.db") as gw:
        client = openai_client(gw, "k-app")
        for i in range(3):
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model=f"made-up-{i}", messages=MSG)
        text = _metrics(gw)
    assert "made-up" not in text
    assert _sample(text, "gateway_requests_total", endpoint="chat.completions", model="unknown", key="app",
                   status="404") == 3


def _exported_names() -> set[str]:
    """Every sample name the gateway's registry can expose (counters as _total, histograms as
    _bucket / _sum / _count), read from the exposition's TYPE lines."""
    names = set()
    for line in Metrics().render().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter":  # the text format names a counter's family with its _total already
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
    return names


def _panels(node):
    for panel in node.get("panels", ()):
        yield panel
        yield from _panels(panel)


def test_every_dashboard_query_names_an_exported_metric():
    board = json.loads(DASHBOARD.read_text())
    exported = _exported_names()
    exprs = [t["expr"] for p in _panels(board) for t in p.get("targets", ())]
    assert len(exprs) >= 20
    used = {m for e in exprs for m in re.findall(r"\bgateway_[a-z0-9_]+", e)}
    assert used - exported == set(), f"dashboard queries metrics the gateway does not export: {used - exported}"
    # and it covers what operators look at first
    for needed in ("gateway_requests_total", "gateway_request_duration_seconds_bucket",
                   "gateway_stream_first_token_seconds_bucket", "gateway_cost_usd_total",
                   "gateway_check_verdicts_total", "gateway_upstream_attempt_duration_seconds_bucket",
                   "gateway_upstream_fallbacks_total", "gateway_ledger_pending_rows"):
        assert needed in used, needed
    titles = [p["title"] for p in _panels(board)]
    assert len(titles) == len(set(titles)), "panel titles repeat"


def test_grafana_provisioning_points_at_the_dashboard():
    prov = (REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "gateway.yaml").read_text()
    assert "/var/lib/grafana/dashboards" in prov
    compose = (REPO / "deploy" / "compose.yaml").read_text()
    assert "grafana/gateway-dashboard.json:/var/lib/grafana/dashboards/gateway-dashboard.json" in compose
    assert Path(REPO / "deploy" / "prometheus.yml").exists()
