"""The `openai` upstream type against the mock model served over real HTTP."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest

from gateway.keys import HOLDER
from tests.helpers import openai_client, running_gateway, running_mock_server, write_policies

SECRET = "sk-upstream-secret-value-1234567890"


@pytest.fixture(scope="module")
def mock():
    with running_mock_server() as server:
        yield server


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    import os

    os.environ["TEST_UPSTREAM_KEY"] = SECRET
    yaml = f"""
    upstreams:
      remote:
        type: openai
        base_url: {mock.url}/v1
        api_key_env: TEST_UPSTREAM_KEY
        timeouts: {{connect_s: 2, read_s: 2}}
        max_connections: 4
      nowhere:
        type: openai
        base_url: http://127.0.0.1:{_closed_port()}/v1
        timeouts: {{connect_s: 1}}
    models:
      echo: {{targets: [{{upstream: remote, model: echo}}]}}
      slow-stream: {{targets: [{{upstream: remote, model: "echo?chunk_delay_ms=50"}}]}}
      retry-after:
        targets: [{{upstream: remote, model: "echo?fail_status=429&fail_times=1&retry_after=1"}}]
      unauthorized:
        targets: [{{upstream: remote, model: "echo?fail_status=401&fail_message=Incorrect+API+key+provided:+{{{{api_key}}}}"}}]
        retries: 0
      leaky:
        targets: [{{upstream: remote, model: "echo?fail_status=400&fail_message=%3Chtml%3E%3Cbody%3E%3Ch1%3EInternal+error%3C%2Fh1%3E+at+http%3A%2F%2F10.2.3.4%3A8000%2Finternal%2Fv1%2Fgenerate+token+Bearer+abcdefgh12345678ZZ+host+10.2.3.4+key+sk-other-secret-abcdefghijklmnop+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx%1B%5B31m"}}]
        retries: 0
      garbage: {{targets: [{{upstream: remote, model: "echo?garbage=true"}}], retries: 0}}
      cut: {{targets: [{{upstream: remote, model: "echo?cut_after=4"}}]}}
      unreachable-then-ok:
        targets: [{{upstream: nowhere, model: x}}, {{upstream: remote, model: echo}}]
        retries: 0
    server: {{watch_interval_s: 0}}
    """
    root = write_policies(tmp_path_factory.mktemp("p"), yaml)
    with running_gateway(root) as server:
        yield server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def msg(text):
    return [{"role": "user", "content": text}]


def test_non_streaming_and_streaming_relay(gw):
    client = openai_client(gw)
    assert client.chat.completions.create(model="echo", messages=msg("over http")).choices[0].message.content == "over http"
    chunks = list(client.chat.completions.create(model="echo", messages=msg("one two three"), stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert any(c.usage for c in chunks)
    assert client.embeddings.create(model="echo", input="x").data[0].embedding


def test_retry_after_over_http(gw):
    t0 = time.monotonic()
    out = openai_client(gw).chat.completions.create(model="retry-after", messages=msg("again"))
    assert out.choices[0].message.content == "again" and time.monotonic() - t0 >= 1.0


def test_upstream_auth_failure_is_502_and_never_shows_the_upstream_key(gw):
    with pytest.raises(openai.InternalServerError) as e:
        openai_client(gw).chat.completions.create(model="unauthorized", messages=msg("x"))
    assert e.value.status_code == 502
    raw = e.value.response.text
    assert SECRET not in raw and "[upstream key]" in raw


def test_garbage_and_connect_errors(gw):
    client = openai_client(gw)
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="garbage", messages=msg("x"))
    assert "not JSON" in e.value.message
    out = client.chat.completions.create(model="unreachable-then-ok", messages=msg("fell back"))
    assert out.choices[0].message.content == "fell back"
    assert [a["outcome"] for a in out.model_extra["gateway"]["attempts"]] == ["connect", "ok"]


def test_upstream_closing_mid_stream_gives_error_event(gw):
    stream = openai_client(gw).chat.completions.create(model="cut", messages=msg("a b c d e f g h"), stream=True)
    got = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            got.append(chunk)
    assert 1 <= len(got) <= 4


def test_client_disconnect_mid_stream_cancels_upstream(gw, mock):
    words = " ".join(f"w{i}" for i in range(200))  # 200 chunks x 50 ms: ~10 s if not cancelled
    body = {"model": "slow-stream", "stream": True, "messages": msg(words)}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", gw.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            for _ in range(6):
                next(lines)
        # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 5
    stats = {}
    while time.monotonic() < deadline:
        stats = httpx.get(mock.url + "/mock/stats").json()
        if stats["active_streams"] == 0:
            break
        time.sleep(0.05)
    assert stats["active_streams"] == 0, "upstream stream still running after the client left"
    upstream = gw.app[HOLDER].current.upstreams["remote"]

    async def free_slots():
        return upstream._slots._value

    assert gw.call(free_slots) == 4, "a connection slot leaked"


def test_stream_usage_off_sends_no_stream_options(mock, tmp_path):
    from tests.helpers import write_policies

    root = write_policies(tmp_path, f"""
    upstreams:
      plain: {{type: openai, base_url: "{mock.url}/v1", stream_usage: false}}
    models: {{echo: {{targets: [{{upstream: plain, model: echo}}]}}}}
    server: {{watch_interval_s: 0}}
    """)
    with running_gateway(root) as gw:
        chunks = list(openai_client(gw).chat.completions.create(model="echo", messages=msg("a b c"), stream=True))
    usage = chunks[-1].model_extra["gateway"]["usage"]
    assert usage["source"] == "estimated" and usage["output_tokens"] == 3  # counted by the gateway


def test_upstream_error_text_reaches_clients_bounded_and_sanitised(gw, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="gateway.upstream"):
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                       json={"model": "leaky", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith("upstream answered HTTP 400: Internal error")
    for leak in ("10.2.3.4", "internal/v1", "abcdefgh12345678ZZ", "sk-other-secret", "<h1>", "\x1b"):
        assert leak not in message, (leak, message)
    assert "[url]" in message and "[redacted]" in message and len(message) <= 340
    assert "10.2.3.4:8000/internal" in caplog.text  # the full text: debug log only
