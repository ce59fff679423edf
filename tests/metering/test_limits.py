import asyncio
import datetime as dt

import pytest

from gateway.metering.limits import InProcessCounters, Limits, RateLimited, Scope

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC).timestamp()


def reserve(c, scopes, tokens=0, usd=0.0, now=T0):
    return asyncio.run(c.reserve(scopes, tokens, usd, now))


def test_requests_per_minute_slides():
    c = InProcessCounters()
    s = (Scope("key:a", Limits(requests_per_minute=2)),)
    reserve(c, s, now=T0)
    reserve(c, s, now=T0 + 10)
    with pytest.raises(RateLimited) as e:
        reserve(c, s, now=T0 + 20)
    assert e.value.code == "rate_limit_exceeded" and e.value.headers["Retry-After"] == "40"
    reserve(c, s, now=T0 + 61)  # the first request left the window


def test_tokens_per_minute_and_settle_with_real_usage():
    c = InProcessCounters()
    s = (Scope("key:a", Limits(tokens_per_minute=100)),)
    r = reserve(c, s, tokens=80)
    c.settle(r, 30, 0.0, now=T0 + 1)  # the real usage was lower: capacity comes back
    reserve(c, s, tokens=60, now=T0 + 1)
    with pytest.raises(RateLimited):
        reserve(c, s, tokens=20, now=T0 + 2)
    with pytest.raises(RateLimited, match="more than"):
        reserve(c, s, tokens=500, now=T0 + 120)


def test_budgets_day_and_month_with_retry_after_to_next_period():
    c = InProcessCounters()
    c._day_start = T0 - 12 * 3600
    c._month_start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
    s = (Scope("key:a", Limits(usd_per_day=1.0, usd_per_month=1.5)),)
    r = reserve(c, s, usd=0.1)
    c.settle(r, 0, 0.95, now=T0)  # real cost
    with pytest.raises(RateLimited) as e:
        reserve(c, s, usd=0.1)
    assert e.value.code == "insufficient_quota" and e.value.headers["Retry-After"] == str(12 * 3600)


def test_all_scopes_checked_before_any_is_counted():
    c = InProcessCounters()
    key = Scope("key:a", Limits(requests_per_minute=10))
    group = Scope("group:g", Limits(requests_per_minute=1))
    reserve(c, (key, group))
    with pytest.raises(RateLimited, match="group:g"):
        reserve(c, (key, group))
    assert c.requests["key:a"].total(T0) == 1  # the refused request counted nowhere


def test_seeded_spend_counts_against_budget():
    c = InProcessCounters()
    c.seed_spend({"key:a": 2.0}, {"key:a": 2.0})
    with pytest.raises(RateLimited):
        asyncio.run(c.reserve((Scope("key:a", Limits(usd_per_day=2.0)),), 0, 0.01, c._day_start + 10))
