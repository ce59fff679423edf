"""The `gateway` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import httpx

from tests.helpers import REPO, free_port, gateway_cmd, run_cli, wait_http, write_policies

GW = """
upstreams: {mock: {type: mock}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
server: {watch_interval_s: 0, shutdown_grace_s: 10}
"""


def test_check_policies_accepts_the_shipped_policies():
    r = run_cli("check-policies", "--policies", str(REPO / "policies"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("ok:")


def test_check_policies_reports_file_line_and_field(tmp_path):
    root = write_policies(tmp_path, GW, bad="""
    request:
      - type: denylist
        words: [x]
        acton: block
      - type: no-such-check
    response:
      - {type: denylist, words: [y], stream: sometimes}
    """)
    r = run_cli("check-policies", "--policies", str(root))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{root}/bad.yaml:5: request[0].acton: unknown field" in r.stderr
    assert ("request[1].type: unknown check type 'no-such-check'; known types: citations, denylist, faithfulness, "
            "injection, pii, safety, topics") in r.stderr
    assert f"{root}/bad.yaml:8: response[0].stream" in r.stderr


def test_yaml_syntax_error_and_bad_gateway_file(tmp_path):
    root = write_policies(tmp_path, GW + "models: [oops\n")
    r = run_cli("check-policies", "--policies", str(root))
    assert r.returncode == 2 and "YAML syntax error" in r.stderr and "gateway.yaml:" in r.stderr
    root = write_policies(tmp_path / "b", """
    upstreams: {mock: {type: mock, behaviour: {latency_ms: -1}}}
    models:
      echo: {targets: [{upstream: nope, model: echo}]}
    keys: [{name: k, sha256: "abc"}]
    """)
    r = run_cli("check-policies", "--policies", str(root))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "gateway.yaml:2: upstreams.mock.behaviour.latency_ms" in r.stderr
    assert "keys[0].sha256" in r.stderr


def test_serve_with_invalid_policies_exits_2_without_traceback(tmp_path):
    root = write_policies(tmp_path, GW, default="request: [{type: denylist}]\n")
    r = run_cli("serve", "--policies", str(root), "--port", str(free_port()), timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "give at least one entry" in r.stderr


def test_serve_refuses_an_unknown_embedding_precision(tmp_path):
    root = write_policies(tmp_path, GW)
    r = run_cli("serve", "--policies", str(root), "--port", str(free_port()), timeout=30,
                env={"GATEWAY_EMBED_PRECISION": "fp8"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "GATEWAY_EMBED_PRECISION='fp8': use one of auto, bf16, fp32" in r.stderr


def test_open_mode_refused_on_public_address(tmp_path):
    root = write_policies(tmp_path, GW)
    r = run_cli("serve", "--policies", str(root), "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)
    assert r.returncode == 2 and "--allow-open" in r.stderr


def _serve(root, tmp_path, *extra):
    port = free_port()
    proc = subprocess.Popen(gateway_cmd("serve", "--policies", str(root), "--port", str(port),
                                        "--state-dir", str(tmp_path / "state"), *extra),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    return proc, url


def test_sighup_reloads_and_sigterm_drains_in_flight_requests(tmp_path):
    root = write_policies(tmp_path, GW)
    proc, url = _serve(root, tmp_path)
    try:
        body = {"model": "echo", "messages": [{"role": "user", "content": "secret plans"}]}
        assert httpx.post(url + "/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"] == "secret plans"
        (root / "default.yaml").write_text("request: [{type: denylist, action: redact, words: [secret]}]\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        content = None
        while time.monotonic() < deadline:
            content = httpx.post(url + "/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
            if content == "[REDACTED] plans":
                break
            time.sleep(0.1)
        assert content == "[REDACTED] plans"

        # A slow request is in flight when SIGTERM arrives: it must still complete.
        result = {}

        def slow():
            slow_body = {**body, "gateway": {"mock": {"latency_ms": 1500}}}
            result["r"] = httpx.post(url + "/v1/chat/completions", json=slow_body, timeout=20)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t.join(20)
        assert result["r"].status_code == 200
        assert proc.wait(20) == 0
        assert (tmp_path / "state").is_dir()
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        assert "Traceback" not in out, out


def test_json_logs_are_one_object_per_line_with_request_fields_and_no_prompt_text(tmp_path):
    import json

    root = write_policies(tmp_path, GW)
    proc, url = _serve(root, tmp_path, "--log-format", "json", "--access-log")
    try:
        body = {"model": "echo", "messages": [{"role": "user", "content": "my secret plans\nforged line"}]}
        r = httpx.post(url + "/v1/chat/completions", json=body)
        assert r.status_code == 200
        httpx.get(url + "/no/such%0apath")  # a line break a client put in the path stays in its string
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        out = proc.stdout.read()
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith("gateway ")]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    access = [r for r in records if r["logger"] == "gateway.access"]
    chat = next(r for r in access if r["path"] == "/v1/chat/completions")
    assert chat["status"] == 200 and chat["request_id"] == r.headers["x-gateway-request-id"]
    assert chat["model"] == "echo" and chat["upstream"] == "mock" and chat["latency_ms"] > 0
    assert any(r["status"] == 404 for r in access)
    assert "secret plans" not in out and "forged line" not in out


def test_default_quick_start_serves_mock_and_logs_open_mode(tmp_path):
    env_backup = os.environ.pop("OPENAI_API_KEY", None)
    try:
        proc, url = _serve(REPO / "policies", tmp_path)
        try:
            wait_http(url + "/readyz")
            r = httpx.post(url + "/v1/chat/completions",
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["gateway"]["route"]["upstream"] == "mock"
        finally:
            proc.terminate()
            proc.wait(20)
        out = proc.stdout.read()
        assert "OPEN MODE" in out and "served by stand-in mock/echo" in out
    finally:
        if env_backup is not None:
            os.environ["OPENAI_API_KEY"] = env_backup


def test_hash_key_and_help():
    r = run_cli("hash-key", "abc")
    assert r.stdout.strip() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    for sub in ("serve", "check-policies", "bench", "mock-server"):
        assert run_cli(sub, "--help").returncode == 0


def test_mock_targets_and_scripts_are_checked_at_load(tmp_path):
    root = write_policies(tmp_path, """
    upstreams: {mock: {type: mock}}
    models:
      typo: {targets: [{upstream: mock, model: "echo?fial_status=500"}]}
      script: {targets: [{upstream: mock, model: "scripted?script=missing.yaml"}]}
    """)
    r = run_cli("check-policies", "--policies", str(root))
    assert r.returncode == 2, r.stdout
    assert "gateway.yaml:4: models.typo.targets[0].model: fial_status: Extra inputs are not permitted" in r.stderr
    assert "models.script.targets[0].model: script 'missing.yaml': no such file" in r.stderr


def test_scripted_mock_reads_script_relative_to_policies(tmp_path):
    from tests.helpers import openai_client, running_gateway

    root = write_policies(tmp_path, """
    upstreams: {support: {type: mock, behaviour: {mode: scripted, script: mock/replies.yaml}}}
    models: {bot: {targets: [{upstream: support, model: scripted}]}}
    server: {watch_interval_s: 0}
    """)
    (root / "mock").mkdir()
    (root / "mock" / "replies.yaml").write_text("- {match: 'refund', reply: 'Refunds take 5 days.'}\n- {reply: 'Ask me about refunds.'}\n")
    with running_gateway(root) as gw:
        out = openai_client(gw).chat.completions.create(model="bot", messages=[{"role": "user", "content": "refund?"}])
        assert out.choices[0].message.content == "Refunds take 5 days."
