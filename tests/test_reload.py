"""Hot reload: valid edits swap in atomically, invalid ones keep the old set and say why."""

from __future__ import annotations

import time

import httpx

from tests.helpers import openai_client, running_gateway, write_policies

GW = """
upstreams: {mock: {type: mock}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
server: {watch_interval_s: 0.1}
"""


def _wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_valid_edit_applies_without_restart(tmp_path):
    root = write_policies(tmp_path, GW)
    with running_gateway(root) as gw:
        client = openai_client(gw)
        assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "secret"}])
        (root / "default.yaml").write_text("request: [{type: denylist, action: redact, words: [secret]}]\n")
        assert _wait(lambda: client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "my secret"}]).choices[0].message.content
            == "my [REDACTED]")
        # a new model via gateway.yaml
        (root / "gateway.yaml").write_text(GW.replace("models:", "models:\n  echo2: {targets: [{upstream: mock, model: echo}]}"))
        assert _wait(lambda: "echo2" in {m.id for m in client.models.list()})


def test_invalid_edit_keeps_old_set_and_reports_file_and_line(tmp_path):
    root = write_policies(tmp_path, GW)
    with running_gateway(root) as gw:
        client = openai_client(gw)
        (root / "default.yaml").write_text("request:\n  - type: denylist\n    action: explode\n    words: [x]\n")
        assert _wait(lambda: (httpx.get(gw.url + "/readyz").json().get("last_reload") or {}).get("ok") is False)
        ready = httpx.get(gw.url + "/readyz")
        assert ready.status_code == 200  # the old set still serves
        problems = ready.json()["last_reload"]["problems"]
        assert any("default.yaml:3" in p and "request[0].action" in p for p in problems), problems
        out = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
        assert out.choices[0].message.content == "x"
        r = httpx.post(gw.url + "/admin/reload")
        assert r.status_code == 422 and r.json()["ok"] is False
        # fixing the file recovers
        (root / "default.yaml").write_text("request: []\n")
        assert _wait(lambda: httpx.get(gw.url + "/readyz").json()["last_reload"]["ok"] is True)


def test_a_state_edit_waits_for_a_restart_and_says_so(tmp_path, caplog, monkeypatch):
    from gateway.keys import HOLDER

    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    root = write_policies(tmp_path, GW)
    with running_gateway(root) as gw:
        holder = gw.app[HOLDER]
        (root / "gateway.yaml").write_text(GW + "state: {counters: redis}\n")
        assert _wait(lambda: "takes effect at the next restart" in caplog.text)
        assert holder.current.state.counters == "embedded"  # what is running, not what the file says
        assert httpx.get(gw.url + "/healthz").status_code == 200


def test_a_telemetry_edit_waits_for_a_restart_and_says_so(tmp_path, caplog):
    from gateway.keys import HOLDER

    root = write_policies(tmp_path, GW)
    with running_gateway(root) as gw:
        holder = gw.app[HOLDER]
        (root / "gateway.yaml").write_text(GW + "telemetry: {enabled: true, endpoint: 'http://127.0.0.1:9/v1/traces'}\n")
        assert _wait(lambda: "`telemetry:` section of gateway.yaml changed" in caplog.text)
        assert holder.current.telemetry.enabled is False
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200 and "x-gateway-trace-id" not in r.headers
