"""Regression tests for the outside review's defects (issue #19): wrong types, slow clients,
cross-site requests, forged log lines, secrets in aiohttp's error logs, a port already in use."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from tests.canaries import KEY as CANARY_KEY
from tests.canaries import PROMPT as CANARY_PROMPT
from tests.helpers import REPO, free_port, gateway_cmd, post, running_gateway, session_log, wait_http, write_policies

GATEWAY = """
upstreams: {mock: {type: mock}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
server:
  watch_interval_s: 0
  header_timeout_s: 0.6
  body_timeout_s: 0.6
  max_connections_per_client: 4
  cors_origins: ["https://app.example.com"]
"""



@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with running_gateway(write_policies(tmp_path_factory.mktemp("p"), GATEWAY)) as server:
        yield server


def chat(gw, body, **kw) -> httpx.Response:
    return post(gw, "/v1/chat/completions", json=body, **kw)


def ok_body(**extra) -> dict:
    return {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}


# ---- 1. every field type-checked ----------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"model": "echo", "messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ({"model": "echo", "messages": [{"role": {"a": 1}, "content": "hi"}]}, "messages[0].role"),
    ({"model": "echo", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "echo", "messages": {"role": "user"}}, "messages"),
    ({"model": ["echo"], "messages": [{"role": "user", "content": "hi"}]}, "model"),
    (ok_body(temperature="hot"), "temperature"),
    (ok_body(temperature=7), "temperature"),
    (ok_body(top_p=-1), "top_p"),
    (ok_body(max_tokens="ten"), "max_tokens"),
    (ok_body(n=0), "n"),
    (ok_body(stream="yes"), "stream"),
    (ok_body(stop=[1, 2]), "stop"),
    (ok_body(logit_bias={"50256": 1000}), "logit_bias"),
    (ok_body(presence_penalty=3), "presence_penalty"),
    (ok_body(seed=1.5), "seed"),
    (ok_body(tools="all"), "tools"),
    (ok_body(response_format={"type": 3}), "response_format"),
    (ok_body(gateway=[1]), "gateway"),
])
def test_a_wrong_type_or_range_is_a_400_naming_the_field(gw, body, field):
    r = chat(gw, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert field in error["message"] and error["type"] == "invalid_request_error"


def test_embeddings_fields_are_type_checked_too(gw):
    r = post(gw, "/v1/embeddings", json={"model": "echo", "input": {"text": "x"}})
    assert r.status_code == 400 and "input" in r.json()["error"]["message"]


def test_valid_sampling_parameters_still_pass(gw):
    r = chat(gw, ok_body(temperature=0.2, top_p=1, max_tokens=20, n=1, stop=["\n"], seed=3, presence_penalty=0.5))
    assert r.status_code == 200, r.text


# ---- 7. slow clients ----------------------------------------------------------------------------
def _raw(gw) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_body_sent_one_byte_at_a_time_gets_408_and_others_are_served(gw):
    s = _raw(gw)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n")
    started = time.monotonic()
    try:
        for _ in range(20):  # 4 s of trickling if nobody stops it
            s.sendall(b"{")
            assert chat(gw, ok_body()).status_code == 200  # the slow client does not hold others up
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"server.body_timeout_s" in reply
    assert time.monotonic() - started < 3.5


def test_headers_that_never_finish_get_408(gw):
    s = _raw(gw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: headers never complete
    started = time.monotonic()
    reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 408") and b"server.header_timeout_s" in reply
    assert time.monotonic() - started < 3


def test_connections_beyond_the_per_address_cap_get_429(gw):
    held = [_raw(gw) for _ in range(4)]
    for s in held:  # keep them busy with complete-looking but unfinished requests
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        extra = _raw(gw)
        reply = _read_all(extra)
        assert reply.startswith(b"HTTP/1.1 429") and b"max_connections_per_client" in reply
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the count goes down as connections close
        try:
            if httpx.get(gw.url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        pytest.fail("the gateway did not serve again after the held connections closed")


# ---- 8. cross-site requests ---------------------------------------------------------------------
def test_a_text_plain_body_is_415(gw):
    r = post(gw, "/v1/chat/completions", content=b'{"model":"echo","messages":[]}',
             headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]


def test_an_unlisted_origin_is_403_and_a_listed_one_gets_cors_headers(gw):
    r = chat(gw, ok_body(), headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "server.cors_origins" in r.json()["error"]["message"]
    r = chat(gw, ok_body(), headers={"Origin": "https://app.example.com"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_cors_preflight_only_for_configured_origins(gw):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}
    r = httpx.options(gw.url + "/v1/chat/completions", headers={"Origin": "https://app.example.com", **pre})
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    r = httpx.options(gw.url + "/v1/chat/completions", headers={"Origin": "https://evil.example", **pre})
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers


# ---- 4, 5, 10: a real `gateway serve` process and its logs ---------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`gateway serve --access-log --log-level debug` on a free port; yields (port, stop() -> log text)."""
    root = write_policies(tmp_path_factory.mktemp("served"), GATEWAY)
    port = free_port()
    state = tmp_path_factory.mktemp("state")
    proc = subprocess.Popen(gateway_cmd("serve", "--policies", str(root), "--port", str(port), "--state-dir", str(state),
                                        "--access-log", "--log-level", "debug"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)

    def stop() -> str:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        return out

    try:
        yield port, stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        return _read_all(s)


def test_logs_hold_no_forged_lines_no_header_values_and_no_prompt(served):
    port, stop = served
    # 4: a CR LF in the path would start a forged access-log line
    _send(port, b"GET /v1/models%0d%0a2026-12-01%2000:00:00,000%20INFO%20gateway.access:%20FORGED HTTP/1.1\r\nHost: x\r\n\r\n")
    # 5: bare-LF line endings make aiohttp's parser fail; its own logging printed the raw request
    body = ('{"model":"echo","messages":[{"role":"user","content":"%s"}]}' % CANARY_PROMPT).encode()
    raw = (b"POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer " + CANARY_KEY.encode()
           + b"\nContent-Type: application/json\nContent-Length: " + str(len(body)).encode() + b"\n\n" + body)
    reply = _send(port, raw)
    assert reply.startswith(b"HTTP/1.1 400") or reply == b"", reply[:200]
    # a normal request with the canaries, answered
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                   headers={"Authorization": f"Bearer {CANARY_KEY}"},
                   json={"model": "echo", "messages": [{"role": "user", "content": CANARY_PROMPT}]})
    assert r.status_code in (200, 401), r.text
    log = stop()
    session_log(log)
    assert "gateway.access" in log  # the access log was on
    assert not any(line.lstrip().startswith("2026-12-01 00:00:00,000") for line in log.splitlines()), log
    forged = [line for line in log.splitlines() if "FORGED" in line]
    assert forged and all("gateway.access: GET /v1/models\\r\\n" in line for line in forged), forged
    assert CANARY_KEY not in log and "Zq81XvT4" not in log
    assert "quartzflour" not in log
    assert "Traceback" not in log


def test_a_port_in_use_is_a_message_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        root = write_policies(tmp_path / "p", GATEWAY)
        r = subprocess.run(gateway_cmd("serve", "--policies", str(root), "--port", str(port), "--state-dir",
                                       str(tmp_path / "s")), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"127.0.0.1:{port}" in r.stderr and "already in use" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
