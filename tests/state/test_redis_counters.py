"""Rate limits and budgets in a real Redis, shared by several stores (as by several replicas):
together they admit exactly what one would; reservations of a dead replica expire; a Redis that is
down is handled as configured."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gateway.errors import GatewayError
from gateway.metering.limits import InProcessCounters, Limits, RateLimited, Scope
from gateway.state.config import StateError, StateSettings, redacted
from gateway.state.redis import RedisCounters
from tests.helpers import REDIS_URL


def replicas(prefix: str, n: int, **settings) -> list[RedisCounters]:
    # closed and a generous timeout: on a loaded machine a slow call must fail the test, not be admitted
    cfg = StateSettings(counters="redis", key_prefix=prefix, on_backend_error="closed", timeout_s=10, **settings)
    return [RedisCounters(cfg, REDIS_URL) for _ in range(n)]


async def hammer(stores, scopes, attempts: int, tokens: int = 0, usd: float = 0.0, settle=None) -> int:
    """`attempts` reservations spread round-robin over the stores, concurrently; admitted count."""
    admitted = 0

    async def one(i: int) -> None:
        nonlocal admitted
        store = stores[i % len(stores)]
        try:
            r = await store.reserve(scopes, tokens, usd, time.time())
        except RateLimited:
            return
        admitted += 1
        if settle is not None:
            store.settle(r, *settle)

    await asyncio.gather(*(one(i) for i in range(attempts)))
    for s in stores:
        await s.close()
    return admitted


def test_three_replicas_admit_exactly_the_rpm_limit(prefix):
    scopes = (Scope("key:a", Limits(requests_per_minute=600)),)
    assert asyncio.run(hammer(replicas(prefix, 3), scopes, 2400)) == 600


def test_key_and_group_are_checked_together_and_a_refusal_counts_nothing(prefix):
    key = Scope("key:a", Limits(requests_per_minute=100))
    group = Scope("group:g", Limits(requests_per_minute=50))
    other = Scope("key:b", Limits(requests_per_minute=100))

    async def run():
        stores = replicas(prefix, 2)
        a = await hammer(stores[:1], (key, group), 120)
        b = await hammer(stores[1:], (other, group), 10)  # the group is full: b is refused too
        return a, b
    assert asyncio.run(run()) == (50, 0)


def test_tpm_limit_with_settlement_is_exact(prefix):
    scopes = (Scope("key:t", Limits(tokens_per_minute=10_000)),)

    async def run():
        stores = replicas(prefix, 3)
        held = []

        async def one(i):
            try:
                held.append((stores[i % 3], await stores[i % 3].reserve(scopes, 200, 0.0, time.time())))
            except RateLimited:
                pass
        await asyncio.gather(*(one(i) for i in range(100)))  # estimates of 200 tokens: 50 fit
        first = len(held)
        for store, r in held:  # the real usage was 100 each: half the window frees up
            store.settle(r, 100, 0.0)
        await asyncio.sleep(0.3)  # settlements are scheduled, not awaited by the request
        for s in stores:
            await s.close()
        return first, await hammer(replicas(prefix, 3), scopes, 200, tokens=100)
    first, second = asyncio.run(run())
    assert first == 50 and second == 50  # 50 x 100 settled = 5,000; 50 more x 100 = 10,000


def test_usd_budget_is_exact_and_a_dead_replicas_reservations_expire(prefix):
    scopes = (Scope("key:u", Limits(usd_per_day=1.0)),)

    async def run():
        stores = replicas(prefix, 3, reservation_ttl_s=1)
        # reserve 0.01 each and never settle (the replicas "die"): 100 fit
        admitted = await hammer(stores, scopes, 300, usd=0.01)
        blocked = await hammer(replicas(prefix, 1, reservation_ttl_s=1), scopes, 5, usd=0.01)
        await asyncio.sleep(1.2)  # the reservations expire
        after = await hammer(replicas(prefix, 1, reservation_ttl_s=1), scopes, 5, usd=0.01)
        return admitted, blocked, after
    assert asyncio.run(run()) == (100, 0, 5)


def test_settled_spend_counts_and_the_refusal_says_so(prefix):
    scopes = (Scope("key:s", Limits(usd_per_day=0.05)),)

    async def run():
        stores = replicas(prefix, 2)
        # all ten reserved on a low estimate before any settles (settling in the same gather raced
        # the later reservations), then each settles at a real cost ten times higher
        held = await asyncio.gather(*(stores[0].reserve(scopes, 0, 0.001, time.time()) for _ in range(10)))
        n = len(held)
        for r in held:
            stores[0].settle(r, 0, 0.01)
        await stores[0].close()  # waits for the scheduled settlements
        store = replicas(prefix, 1)[0]
        with pytest.raises(RateLimited) as e:
            for _ in range(10):
                await store.reserve(scopes, 0, 0.001, time.time())
        await store.close()
        return n, e.value
    n, err = asyncio.run(run())
    assert n == 10  # admitted on the low estimates, all before any settled
    assert err.code == "insufficient_quota" and "$0.1000 spent" in err.message


def test_same_decisions_as_the_embedded_store(prefix):
    scopes = (Scope("key:e", Limits(requests_per_minute=7, tokens_per_minute=500)),)

    async def decisions(store) -> list[bool]:
        out = []
        for tokens in [100, 100, 200, 50, 100, 10, 10, 10, 10]:
            try:
                await store.reserve(scopes, tokens, 0.0, time.time())
                out.append(True)
            except RateLimited:
                out.append(False)
        return out

    async def run():
        store = replicas(prefix, 1)[0]
        shared = await decisions(store)
        await store.close()
        return shared, await decisions(InProcessCounters())
    shared, embedded = asyncio.run(run())
    assert shared == embedded and shared.count(True) == 7


def _sync_redis():
    import redis

    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


def test_seconds_that_left_the_window_stop_counting(prefix):
    """The window keeps a running total; the buckets of seconds that left the last minute are
    subtracted from it (a hash as the gateway left it at its last call, 30 s ago: 8 requests 70 s
    ago, 5 requests 30 s ago, and `lo` that call's window start)."""
    r = _sync_redis()
    sec = int(r.time()[0])
    key = f"{prefix}:rpm:key:w"
    r.hset(key, mapping={str(sec - 70): 8, str(sec - 30): 5, "t": 13, "lo": sec - 30 - 59})
    r.expire(key, 120)
    scopes = (Scope("key:w", Limits(requests_per_minute=10)),)
    assert asyncio.run(hammer(replicas(prefix, 2), scopes, 20)) == 5  # 10 - the 5 still in the window
    h = r.hgetall(key)
    assert str(sec - 70) not in h and int(h["t"]) == 10 == sum(int(v) for f, v in h.items() if f.isdigit())
    r.close()


def test_windows_and_reservations_of_the_first_version_are_recounted(prefix):
    """Hashes written before the running totals existed (buckets only, reservations only) are
    recounted on first use, so an upgrade admits exactly what the limits leave."""
    r = _sync_redis()
    sec, usec = (int(x) for x in r.time())
    r.hset(f"{prefix}:rpm:key:v", mapping={str(sec - 70): 8, str(sec - 10): 4})
    r.expire(f"{prefix}:rpm:key:v", 120)
    r.zadd(f"{prefix}:resv:z:key:v", {"r-old1": sec + 300, "r-old2": sec + 300})
    r.hset(f"{prefix}:resv:h:key:v", mapping={"r-old1": "0.25", "r-old2": "0.25"})
    scopes = (Scope("key:v", Limits(requests_per_minute=6)),)
    assert asyncio.run(hammer(replicas(prefix, 1), scopes, 10)) == 2  # 6 - the 4 of 10 s ago
    budget = (Scope("key:v", Limits(usd_per_day=1.0)),)
    assert asyncio.run(hammer(replicas(prefix, 1), budget, 10, usd=0.1)) == 5  # 1.0 - 0.5 held
    r.close()


def test_running_totals_match_the_buckets_and_reservations_after_mixed_traffic(prefix):
    scopes = (Scope("key:m", Limits(requests_per_minute=10_000, tokens_per_minute=1_000_000, usd_per_day=100.0)),
              Scope("group:m", Limits(requests_per_minute=10_000)))

    async def run():
        stores = replicas(prefix, 3)
        kept = []

        async def one(i):
            store = stores[i % 3]
            res = await store.reserve(scopes, 100 + i, 0.001 * (i % 7 + 1), time.time())
            if i % 4:
                store.settle(res, 90 + i, 0.002)  # a quarter stay open, as if their replica died
            else:
                kept.append(res)
        await asyncio.gather(*(one(i) for i in range(300)))
        for s in stores:
            await s.close()
        return kept
    kept = asyncio.run(run())
    r = _sync_redis()
    for kind in ("rpm", "tpm"):
        h = r.hgetall(f"{prefix}:{kind}:key:m")
        assert int(h["t"]) == sum(int(v) for f, v in h.items() if f.isdigit())
    assert int(r.hget(f"{prefix}:rpm:key:m", "t")) == 300 == int(r.hget(f"{prefix}:rpm:group:m", "t"))
    assert int(r.hget(f"{prefix}:tpm:key:m", "t")) == sum(
        (90 + i) if i % 4 else (100 + i) for i in range(300))
    h = r.hgetall(f"{prefix}:resv:h:key:m")
    open_usd = sum(float(v) for f, v in h.items() if f.startswith("r-"))
    assert len([f for f in h if f.startswith("r-")]) == len(kept) == 75
    assert abs(float(h["_sum"]) - open_usd) < 1e-9 and abs(open_usd - sum(k.usd for k in kept)) < 1e-9
    r.close()


def test_a_script_redis_lost_is_loaded_again(prefix):
    """SCRIPT FLUSH (or a Redis restarted from a snapshot) drops the scripts: the fast path falls
    back to redis-py's, which loads them, and nothing is counted twice."""
    scopes = (Scope("key:f", Limits(requests_per_minute=5)),)

    async def run():
        store = replicas(prefix, 1)[0]
        await store.reserve(scopes, 0, 0.0, time.time())
        await store._redis.script_flush()
        await store.reserve(scopes, 0, 0.0, time.time())
        await store.close()
        return await hammer(replicas(prefix, 1), scopes, 10)
    assert asyncio.run(run()) == 3


def test_redis_down_is_open_or_closed_as_configured():
    down = "redis://127.0.0.1:9/0"
    scopes = (Scope("key:x", Limits(requests_per_minute=1)),)

    async def run(mode: str):
        errors = []
        store = RedisCounters(StateSettings(counters="redis", on_backend_error=mode, timeout_s=0.2), down,
                              on_error=lambda: errors.append(1))
        try:
            out = [await store.reserve(scopes, 0, 0.0, time.time()) for _ in range(3)]
            return len(out), len(errors)
        finally:
            await store.close()

    assert asyncio.run(run("open")) == (3, 3)  # admitted, not counted, every error counted
    with pytest.raises(GatewayError) as e:
        asyncio.run(run("closed"))
    assert e.value.status == 503 and e.value.code == "limits_unavailable"


def test_start_up_check_names_the_url_without_the_password():
    store = RedisCounters(StateSettings(counters="redis", timeout_s=0.2), "redis://:s3cret@127.0.0.1:9/0")
    with pytest.raises(StateError) as e:
        asyncio.run(store.check())
    assert "127.0.0.1:9" in str(e.value) and "s3cret" not in str(e.value) and "GATEWAY_REDIS_URL" in str(e.value)
    assert redacted("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"


def test_redis_stopped_mid_load_then_back_limits_exact_again(tmp_path):
    """A private redis-server (not the shared one): stop it under load, start it again."""
    import shutil
    import subprocess

    from tests.helpers import free_port

    exe = shutil.which("redis-server")
    if exe is None:
        reason = "redis-server is not installed (the test runs a private one to stop and restart)"
        if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()

    def start():
        proc = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    scopes = (Scope("key:f", Limits(requests_per_minute=50)),)
    url = f"redis://127.0.0.1:{port}/0"

    async def run():
        errors = []
        store = RedisCounters(StateSettings(counters="redis", timeout_s=0.2), url, on_error=lambda: errors.append(1))
        server = start()
        admitted_before = await _count(store, scopes, 30)
        server.kill()
        server.wait()
        admitted_down = await _count(store, scopes, 30)  # on_backend_error: open -> admitted, uncounted
        errors_down = len(errors)
        server = start()  # empty again (no persistence): the window restarts from zero
        admitted_after = await _count(store, scopes, 100)
        server.kill()
        server.wait()
        await store.close()
        return admitted_before, admitted_down, errors_down, admitted_after

    before, down, errs, after = asyncio.run(run())
    assert before == 30 and down == 30 and errs == 30 and after == 50


async def _count(store, scopes, n: int) -> int:
    ok = 0
    for _ in range(n):
        try:
            await store.reserve(scopes, 0, 0.0, time.time())
            ok += 1
        except RateLimited:
            pass
    return ok


def test_spend_is_rebuilt_when_redis_forgets_it_and_never_lowered(prefix):
    import redis

    async def main():
        store, = replicas(prefix, 1)
        budget = (Scope("key:app", Limits(usd_per_day=1.0)),)
        try:
            assert await store.needs_seed()  # a Redis that never held this gateway's spend
            await store.seed_spend({"key:app": 0.7}, {})
            assert not await store.needs_seed()
            with pytest.raises(RateLimited):  # 0.7 spent + 0.4 > 1.0
                await store.reserve(budget, 0, 0.4, time.time())
            await store.seed_spend({"key:app": 0.1}, {})  # a ledger behind Redis does not lower it
            with pytest.raises(RateLimited):
                await store.reserve(budget, 0, 0.4, time.time())
            r = redis.Redis.from_url(REDIS_URL)  # Redis restarted empty (or the keys evicted)
            r.delete(*r.scan_iter(f"{prefix}:*"))
            r.close()
            assert await store.needs_seed()
            await store.reserve(budget, 0, 0.4, time.time())  # admitted: the spend is gone...
            await store.seed_spend({"key:app": 0.7}, {})  # ...until it is rebuilt from the ledger
            with pytest.raises(RateLimited):
                await store.reserve(budget, 0, 0.4, time.time())
        finally:
            await store.close()

    asyncio.run(main())


def test_concurrent_requests_pipeline_on_one_connection_each_with_its_own_reply(prefix):
    """The per-request scripts share one pipelined connection (gateway/state/redis_lane.py): replies
    come back in command order, so 600 concurrent requests over six keys still get their own."""
    limits = {f"key:p{i}": 10 * (i + 1) for i in range(6)}  # different limits: a mixed-up reply shows

    async def run():
        store = replicas(prefix, 1)[0]
        admitted = dict.fromkeys(limits, 0)

        async def one(i: int) -> None:
            name = f"key:p{i % 6}"
            try:
                await store.reserve((Scope(name, Limits(requests_per_minute=limits[name])),), 0, 0.0, time.time())
            except RateLimited:
                return
            admitted[name] += 1

        await asyncio.gather(*(one(i) for i in range(600)))
        lane_used = store._lane._writer is not None
        await store.close()
        return admitted, lane_used

    admitted, lane_used = asyncio.run(run())
    assert admitted == limits and lane_used


def test_a_dropped_or_silent_lane_is_reported_as_down_then_reopened(prefix):
    """The lane's connection killed: requests go on (redis-py's path, then a new lane). A Redis that
    does not answer within timeout_s: that request is handled as Redis down (here: admitted,
    uncounted), and the next ones are counted again."""
    import redis.asyncio as aioredis

    from tests.helpers import REDIS_URL as url

    scopes = (Scope("key:k", Limits(requests_per_minute=1000)),)

    async def run():
        errors = []
        cfg = StateSettings(counters="redis", key_prefix=prefix, on_backend_error="open", timeout_s=0.3)
        store = RedisCounters(cfg, url, on_error=lambda: errors.append(1))
        admin = aioredis.Redis.from_url(url)
        await store.reserve(scopes, 0, 0.0, time.time())
        host, port = store._lane._writer.get_extra_info("sockname")[:2]
        await admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        await asyncio.sleep(0.2)  # the lane's reader sees the close
        assert store._lane._writer is None
        r = await store.reserve(scopes, 0, 0.0, time.time())  # redis-py's path meanwhile
        assert r.counted and not errors
        await asyncio.sleep(1.1)
        await store.reserve(scopes, 0, 0.0, time.time())
        assert store._lane._writer is not None  # a new lane
        await admin.execute_command("CLIENT", "PAUSE", "700", "ALL")
        r = await store.reserve(scopes, 0, 0.0, time.time())
        assert not r.counted and errors == [1]
        await asyncio.sleep(1.5)  # the pause is over and the lane may be reopened
        r = await store.reserve(scopes, 0, 0.0, time.time())
        assert r.counted and errors == [1]
        await admin.aclose()
        await store.close()
        # the paused command never ran: its connection was closed at the timeout, before the pause ended
        return int(await _window_total(prefix))

    assert asyncio.run(run()) == 4


async def _window_total(prefix: str) -> float:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        return float(await r.hget(f"{prefix}:rpm:key:k", "t"))
    finally:
        await r.aclose()
