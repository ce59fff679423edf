import asyncio

import pytest

from gateway.errors import InvalidRequest, UpstreamFailure
from gateway.exchange import Exchange
from gateway.routing import BackoffConfig, Route, RouteConfig, Router, TargetConfig, _backoff
from gateway.upstreams.base import UpstreamError, parse_retry_after


class Scripted:
    """A fake upstream failing with the given errors, then answering."""

    def __init__(self, name, errors):
        self.name = name
        self.errors = list(errors)
        self.calls = 0

    async def call(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _route(*ups, retries=2, timeout_s=5.0):
    cfg = RouteConfig(targets=[TargetConfig(upstream=u.name, model="m") for u in ups], retries=retries,
                      timeout_s=timeout_s, backoff=BackoffConfig(base_s=0.001, max_s=0.002))
    return Route("r", tuple((u, "m") for u in ups), cfg)


def _run(route):
    ex = Exchange("chat.completions", {})
    result = asyncio.run(Router({"r": route}).call(ex, route, lambda up, m: up.call()))
    return result, ex


def test_retries_then_falls_back():
    a = Scripted("a", [UpstreamError("http_503", "x", status=503)] * 3)
    b = Scripted("b", [UpstreamError("connect", "x")])
    result, ex = _run(_route(a, b))
    assert result == "ok" and a.calls == 3 and b.calls == 2
    assert [x.outcome for x in ex.attempts] == ["http_503"] * 3 + ["connect", "ok"]


def test_client_fault_stops_at_once():
    a = Scripted("a", [UpstreamError("http_400", "bad", status=400)])
    b = Scripted("b", [])
    with pytest.raises(InvalidRequest):
        _run(_route(a, b))
    assert b.calls == 0


def test_auth_failure_is_not_retried_but_falls_back():
    a = Scripted("a", [UpstreamError("http_401", "key", status=401)])
    b = Scripted("b", [])
    result, _ = _run(_route(a, b))
    assert result == "ok" and a.calls == 1


def test_retry_after_too_long_skips_to_next_target():
    a = Scripted("a", [UpstreamError("http_429", "slow down", status=429, retry_after=600)])
    b = Scripted("b", [])
    result, _ = _run(_route(a, b))
    assert result == "ok" and a.calls == 1


def test_exhausted_429_keeps_status_and_retry_after():
    a = Scripted("a", [UpstreamError("http_429", "x", status=429, retry_after=0.01)] * 3)
    with pytest.raises(UpstreamFailure) as e:
        _run(_route(a))
    assert e.value.status == 429 and e.value.headers == {"Retry-After": "1"}


def test_backoff_is_jittered_and_bounded():
    cfg = BackoffConfig(base_s=0.5, max_s=2)
    waits = [_backoff(cfg, 5, None) for _ in range(200)]
    assert all(1.5 <= w <= 2 for w in waits) and len(set(waits)) > 100  # capped at max_s, 25% jitter
    steps = [[_backoff(cfg, a, None) for a in range(2)] for _ in range(200)]
    assert all(0.375 <= a <= 0.5 and 0.75 <= b <= 1.0 for a, b in steps)  # never at once, each wait longer
    assert 3 <= _backoff(cfg, 0, 3) <= 3.31
    assert _backoff(BackoffConfig(max_retry_after_s=5), 0, 6) is None


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("2") == 2
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("soon") is None
