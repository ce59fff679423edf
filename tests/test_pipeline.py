"""Check containment: crashes and timeouts follow on_error and are recorded, never counted as passed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.checks import register
from gateway.checks.base import CheckParams, Verdict
from tests.helpers import openai_client, running_gateway, write_policies


class _Params(CheckParams):
    delay_s: float = 0.0


@register
class ExplodingCheck:
    type = "test-explode"
    Params = _Params

    def __init__(self, params):
        self.params = params

    async def request(self, ex):
        raise RuntimeError("user text that must not be logged: 4111-1111-1111-1111")

    async def response(self, ex, out):
        raise RuntimeError("boom")


@register
class SleepyCheck:
    type = "test-sleep"
    Params = _Params

    def __init__(self, params):
        self.params = params

    async def request(self, ex):
        await asyncio.sleep(self.params.delay_s)
        return Verdict.allow()


GW = """
upstreams: {mock: {type: mock}}
models: {echo: {targets: [{upstream: mock, model: echo}]}}
keys:
  - {name: open, sha256: "%s", policy: open}
  - {name: closed, sha256: "%s", policy: closed}
  - {name: slow, sha256: "%s", policy: slow}
  - {name: outfail, sha256: "%s", policy: outfail}
server: {watch_interval_s: 0}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from gateway.auth import hash_key

    root = write_policies(
        tmp_path_factory.mktemp("p"),
        GW % tuple(hash_key(k) for k in ("k-open", "k-closed", "k-slow", "k-outfail")),
        open="request: [{type: test-explode, on_error: open}]\n",
        closed="request: [{type: test-explode, on_error: closed}]\n",
        slow="request: [{type: test-sleep, delay_s: 5, timeout_ms: 50, on_error: closed}]\n",
        outfail="response: [{type: test-explode, on_error: closed}]\n",
    )
    with running_gateway(root) as server:
        yield server


def _call(gw, key):
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "hello"}]}, timeout=30)


def test_crash_fail_open_passes_but_is_recorded_as_error(gw):
    r = _call(gw, "k-open")
    assert r.status_code == 200
    verdict = r.json()["gateway"]["verdicts"][0]
    assert verdict["status"] == "error" and verdict["error"] == "RuntimeError" and verdict["action"] == "allow"


def test_crash_fail_closed_refuses_with_503(gw, caplog):
    r = _call(gw, "k-closed")
    assert r.status_code == 503 and r.json()["error"]["code"] == "check_failed"
    assert "4111" not in caplog.text  # the exception message may quote user text: never logged


def test_timeout_is_contained(gw):
    r = _call(gw, "k-slow")
    assert r.status_code == 503
    verdict = r.json()["gateway"]["verdicts"][0]
    assert verdict["status"] == "timeout" and verdict["latency_ms"] < 1000


def test_response_check_crash_fail_closed_withholds_output(gw):
    out = openai_client(gw, api_key="k-outfail").chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello"}])
    assert out.choices[0].finish_reason == "content_filter" and out.choices[0].message.content == ""
    stream = openai_client(gw, api_key="k-outfail").chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello. world."}], stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""
    assert any(c.choices and c.choices[0].finish_reason == "content_filter" for c in chunks)
