"""Rate limits and budgets in Redis, shared by every worker and replica (the `CounterStore` protocol).

Algorithm: the same sliding 60-second window of 1-second buckets as the embedded store (a hash per
scope: second -> count), so one replica and K replicas admit exactly the same requests. It was
chosen over GCRA because GCRA spreads a minute's allowance evenly (a burst of 600 requests in the
first second of a 600 rpm limit would be refused) and would make the shared store behave unlike the
embedded one; the bucketed window costs one small hash per scope (at most 60 fields).

Atomicity: one Lua script checks every scope of a request (key and group) and, only if all pass,
counts it in all of them, using Redis's own clock (TIME), so replicas with skewed clocks agree.

Budgets: spend per UTC day and month is a float per scope. A request reserves its estimated cost in
a per-scope set of pending reservations that expire after `reservation_ttl_s`; settling replaces
the reservation by the real cost. A replica that dies between reserve and settle therefore leaves
at most its open reservations, and they stop counting when they expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.metering.limits import RateLimited, Reservation, Scope, _limited, _next_month, day_start, month_start
from gateway.state.config import StateError, StateSettings, redacted
from gateway.state.redis_lane import LaneUnavailable, RedisLane

log = logging.getLogger("gateway.state")

# Every per-request step is O(1) in the number of requests a window or a budget holds (the first
# version read all 60 buckets of each window and summed every pending reservation on each call:
# 335 us of Redis time per call at a few hundred req/s). A window hash holds second -> count plus
# 't' (the sum of its live buckets) and 'lo' (every bucket older than `lo` is gone), so moving the
# window drops only the seconds that left it. A reservations hash holds rid -> usd plus '_sum'.
# Hashes written by the first version (no 't' / '_sum') are recounted once, on first use.
_RESERVE = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
local floor = sec - 59
local n, tokens, usd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rid, ttl = ARGV[4], tonumber(ARGV[5])
local function window(key)
  local h = redis.call('HMGET', key, 't', 'lo')
  local total, lo = tonumber(h[1]), tonumber(h[2])
  if total == nil or lo == nil or floor - lo > 60 then
    -- new, written by the first version, or idle for over a minute: recount from the buckets
    local f = redis.call('HGETALL', key)
    local stale, live = {}, 0
    total = 0
    for i = 1, #f, 2 do
      local s = tonumber(f[i])
      if s ~= nil then
        if s < floor then table.insert(stale, f[i]) else total = total + tonumber(f[i + 1]); live = live + 1 end
      end
    end
    if live == 0 then
      if #f > 0 then redis.call('DEL', key) end
      return 0
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
    redis.call('HSET', key, 't', total, 'lo', floor)  -- the key exists: its TTL stays
  elseif lo < floor then
    local gone = {}
    for s = lo, floor - 1 do table.insert(gone, s) end
    for _, v in ipairs(redis.call('HMGET', key, unpack(gone))) do
      if v then total = total - tonumber(v) end
    end
    redis.call('HDEL', key, unpack(gone))
    redis.call('HSET', key, 't', total, 'lo', floor)
  end
  return total
end
local function count(key, amount)
  redis.call('HINCRBY', key, sec, amount)
  redis.call('HINCRBY', key, 't', amount)
  redis.call('HSETNX', key, 'lo', floor)
  redis.call('EXPIRE', key, 120)
end
local function wait_below(key, total, limit, need)
  -- refusals only: when enough of the window will have left it for this request to fit
  local f = redis.call('HGETALL', key)
  local secs, vals = {}, {}
  for i = 1, #f, 2 do
    local s = tonumber(f[i])
    if s ~= nil and s >= floor then table.insert(secs, s); vals[s] = tonumber(f[i + 1]) end
  end
  table.sort(secs)
  for _, s in ipairs(secs) do
    total = total - vals[s]
    if total + need <= limit then return math.max(1, s + 60 - now) end
  end
  return 60
end
local function pending(zkey, hkey)
  local held = tonumber(redis.call('HGET', hkey, '_sum'))
  if held == nil then
    held = 0
    local f = redis.call('HGETALL', hkey)
    for i = 1, #f, 2 do held = held + tonumber(f[i + 1]) end
  end
  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', now)
  if #old > 0 then
    for _, v in ipairs(redis.call('HMGET', hkey, unpack(old))) do
      if v then held = held - tonumber(v) end
    end
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
    redis.call('HDEL', hkey, unpack(old))
    if redis.call('ZCARD', zkey) == 0 then
      held = 0
      redis.call('DEL', hkey)
    elseif redis.call('EXISTS', hkey) == 1 then
      redis.call('HSET', hkey, '_sum', string.format('%.17g', math.max(0, held)))
    end
  end
  return math.max(0, held)
end
local held = {}
for i = 0, n - 1 do
  local k, a = i * 6, 6 + i * 4
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local day_limit, month_limit = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if rpm then
    local total = window(KEYS[k + 1])
    if total + 1 > rpm then return {'rpm', tostring(i), tostring(wait_below(KEYS[k + 1], total, rpm, 1))} end
  end
  if tpm then
    if tokens > tpm then return {'tpm_whole', tostring(i), '60'} end
    local total = window(KEYS[k + 2])
    if total + tokens > tpm then
      return {'tpm', tostring(i), tostring(wait_below(KEYS[k + 2], total, tpm, tokens))}
    end
  end
  if day_limit or month_limit then
    held[i] = pending(KEYS[k + 5], KEYS[k + 6])
    if day_limit then
      local spent = tonumber(redis.call('GET', KEYS[k + 3]) or '0')
      if spent + held[i] + usd > day_limit + 1e-9 then return {'day', tostring(i), tostring(spent + held[i])} end
    end
    if month_limit then
      local spent = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
      if spent + held[i] + usd > month_limit + 1e-9 then return {'month', tostring(i), tostring(spent + held[i])} end
    end
  end
end
for i = 0, n - 1 do
  local k = i * 6
  -- every scope counts, limited or not, as the embedded store does (a limit added by a reload
  -- then sees the last minute's traffic)
  count(KEYS[k + 1], 1)
  if tokens > 0 then count(KEYS[k + 2], tokens) end
  if usd > 0 then
    local h = held[i] or pending(KEYS[k + 5], KEYS[k + 6])
    redis.call('ZADD', KEYS[k + 5], now + ttl, rid)
    redis.call('HSET', KEYS[k + 6], rid, ARGV[3], '_sum', string.format('%.17g', h + usd))
    redis.call('EXPIRE', KEYS[k + 5], math.ceil(ttl) + 60)
    redis.call('EXPIRE', KEYS[k + 6], math.ceil(ttl) + 60)
  end
end
return {'ok', tostring(sec)}
"""
_SETTLE = """
local n, rid, sec, delta, usd = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 0, n - 1 do
  local k = i * 5
  if delta ~= 0 then
    local lo = tonumber(redis.call('HGET', KEYS[k + 1], 'lo'))
    -- only into a bucket still in the window (one that left it is no longer in the total, and an
    -- expired window must not be re-created without a TTL)
    if lo ~= nil and sec >= lo then
      redis.call('HINCRBY', KEYS[k + 1], sec, delta)
      redis.call('HINCRBY', KEYS[k + 1], 't', delta)
    elseif lo == nil and redis.call('EXISTS', KEYS[k + 1]) == 1 then
      redis.call('HINCRBY', KEYS[k + 1], sec, delta)  -- a first-version window: recounted on next use
    end
  end
  local reserved = redis.call('HGET', KEYS[k + 5], rid)
  redis.call('ZREM', KEYS[k + 4], rid)
  if reserved then
    redis.call('HDEL', KEYS[k + 5], rid)
    local sum = tonumber(redis.call('HGET', KEYS[k + 5], '_sum'))
    if redis.call('ZCARD', KEYS[k + 4]) == 0 then
      redis.call('DEL', KEYS[k + 5])
    elseif sum ~= nil then
      redis.call('HSET', KEYS[k + 5], '_sum', string.format('%.17g', math.max(0, sum - tonumber(reserved))))
    end
  end
  if usd > 0 then
    redis.call('INCRBYFLOAT', KEYS[k + 2], usd)
    redis.call('EXPIRE', KEYS[k + 2], 172800)
    redis.call('INCRBYFLOAT', KEYS[k + 3], usd)
    redis.call('EXPIRE', KEYS[k + 3], 3024000)
  end
end
return 1
"""

# Spend from the ledger, raised to where Redis has less: Redis empty after a restart or an eviction
# (or holding only what was spent since) gets the ledger's total; a live counter that is ahead of the
# ledger (rows not flushed yet) is left alone. KEYS[n+1]: the marker that says Redis holds seeded spend.
_SEED = """
local n = #KEYS - 1
for i = 1, n do
  local v = tonumber(ARGV[i * 2 - 1])
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if v > cur then
    redis.call('SET', KEYS[i], ARGV[i * 2 - 1], 'EX', ARGV[i * 2])
  end
end
redis.call('SET', KEYS[n + 1], '1')
return 1
"""


@dataclass(slots=True)
class RedisReservation(Reservation):
    rid: str = ""
    second: str = ""
    counted: bool = True  # False: admitted while Redis was down (on_backend_error: open), nothing to settle


class RedisCounters:
    def __init__(self, settings: StateSettings, url: str, on_error=None) -> None:
        import redis.asyncio as aioredis
        import redis.exceptions as rx

        # What "Redis is down" looks like (on_backend_error applies); anything else is a bug and raises.
        self.down_errors: tuple[type[BaseException], ...] = (rx.ConnectionError, rx.TimeoutError, OSError)

        self.settings = settings
        self.url = url
        self.prefix = settings.key_prefix
        # A blocking pool: under a burst, requests queue for one of 64 connections instead of failing
        # (redis-py's default pool raises MaxConnectionsError when it runs out).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=max(1.0, settings.timeout_s * 4), socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s, health_check_interval=30)
        self._redis = aioredis.Redis(connection_pool=pool)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._seed = self._redis.register_script(_SEED)
        self._lane = RedisLane(pool, settings.timeout_s)
        if not self._lane.disabled:
            from hiredis import pack_command

            self._pack = pack_command
        self._on_error = on_error or (lambda: None)
        self._tasks: set[asyncio.Task] = set()
        self._last_logged = 0.0
        self.errors = 0

    # ---- life cycle --------------------------------------------------------------------------
    async def check(self) -> None:
        """Start-up: reachable, authenticated, scripting available. Raises StateError naming the URL."""
        import redis.exceptions as rx

        where = f"{redacted(self.url)} (state.redis_url_env: ${self.settings.redis_url_env})"
        try:
            await self._redis.ping()
            for script in (_RESERVE, _SETTLE, _SEED):  # loaded now: the first request needs no fallback
                await self._redis.script_load(script)
        except rx.AuthenticationError:
            raise StateError(f"Redis at {where} refused the password") from None
        except rx.ResponseError as e:
            raise StateError(f"Redis at {where} cannot run Lua scripts ({str(e)[:100]}); "
                             "state.counters: redis needs EVAL/EVALSHA") from None
        except self.down_errors as e:
            raise StateError(f"cannot reach Redis at {where}: {type(e).__name__}: {str(e)[:120]}") from None

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._lane.aclose()
        await self._redis.aclose()

    async def needs_seed(self) -> bool:
        """True when Redis lost the spend it held (restarted empty, flushed, or the marker evicted):
        the ledger's spend must be written back (seed_spend). False while Redis is down."""
        try:
            return not await self._redis.exists(f"{self.prefix}:spend-seeded")
        except self.down_errors:
            return False

    async def seed_spend(self, day: dict[str, float], month: dict[str, float], now: float | None = None) -> None:
        """Spend so far from the ledger, raised to where Redis holds less (see _SEED). With a
        per-replica SQLite ledger each replica can only seed its own spend; `ledger: postgres` gives
        every replica the total."""
        now = time.time() if now is None else now
        keys, args = [], []
        for name, value in day.items():
            keys.append(self._day_key(name, now))
            args += [repr(float(value)), "172800"]
        for name, value in month.items():
            keys.append(self._month_key(name, now))
            args += [repr(float(value)), "3024000"]
        await self._seed(keys=[*keys, f"{self.prefix}:spend-seeded"], args=args)

    # ---- keys ----------------------------------------------------------------------------------
    def _day_key(self, scope: str, now: float) -> str:
        return f"{self.prefix}:usd:day:{int(day_start(now))}:{scope}"

    def _month_key(self, scope: str, now: float) -> str:
        return f"{self.prefix}:usd:month:{int(month_start(now))}:{scope}"

    def _scope_keys(self, scope: str, now: float) -> list[str]:
        p = self.prefix
        return [f"{p}:rpm:{scope}", f"{p}:tpm:{scope}", self._day_key(scope, now), self._month_key(scope, now),
                f"{p}:resv:z:{scope}", f"{p}:resv:h:{scope}"]

    # ---- CounterStore --------------------------------------------------------------------------
    async def reserve(self, scopes: tuple[Scope, ...], tokens: int, usd: float, now: float) -> Reservation:
        keys: list[str] = []
        args: list[Any] = [len(scopes), int(tokens), repr(float(usd)), "r-" + os.urandom(8).hex(),
                           repr(self.settings.reservation_ttl_s)]
        for s in scopes:
            keys += self._scope_keys(s.name, now)
            lim = s.limits
            args += [_arg(lim.requests_per_minute), _arg(lim.tokens_per_minute), _arg(lim.usd_per_day),
                     _arg(lim.usd_per_month)]
        try:
            result = await self._evalsha(self._reserve, keys, args)
        except self.down_errors as e:
            return self._backend_down(scopes, tokens, usd, now, e)
        status, *rest = [x.decode() if isinstance(x, bytes) else str(x) for x in result]
        if status == "ok":
            return RedisReservation(scopes, tokens, usd, now, rid=args[3], second=rest[0])
        raise _refusal(status, scopes[int(rest[0])], tokens, float(rest[1]), now)

    async def _evalsha(self, script, keys: list[str], args: list[Any]) -> Any:
        """The script on the pipelined lane (gateway/state/redis_lane.py), its command packed by
        hiredis. A command the lane did not send (no lane now) and a script Redis lost (NOSCRIPT: it
        did not run) take redis-py's own path, which loads the script. A command that was sent but
        whose reply was lost is not sent again: it may have counted, so it is reported as Redis
        being down (state.on_backend_error) rather than risk counting a request twice."""
        lane = self._lane
        if lane.disabled:
            return await script(keys=keys, args=args)
        import redis.exceptions as rx

        try:
            reply = await lane.call(self._pack(("EVALSHA", script.sha, len(keys), *keys, *args)))
        except LaneUnavailable:
            return await script(keys=keys, args=args)
        if isinstance(reply, lane.reply_error):
            if str(reply).startswith("NOSCRIPT"):
                return await script(keys=keys, args=args)
            raise rx.ResponseError(str(reply))
        return reply

    def settle(self, reservation: Reservation, tokens: int, usd: float, now: float | None = None) -> None:
        if not isinstance(reservation, RedisReservation) or not reservation.counted:
            return
        now = time.time() if now is None else now
        delta = int(tokens - reservation.tokens)
        # Only scopes with something to settle: a token limit whose estimate was off, or a budget. A
        # request under a plain rpm limit costs no second round trip.
        scopes = [s for s in reservation.scopes
                  if (delta and s.limits.tokens_per_minute is not None)
                  or (s.limits.usd_per_day is not None or s.limits.usd_per_month is not None)]
        if not scopes:
            return
        keys: list[str] = []
        for s in scopes:
            k = self._scope_keys(s.name, now)
            keys += [k[1], k[2], k[3], k[4], k[5]]
        args = [len(scopes), reservation.rid, reservation.second, delta, repr(float(usd))]
        task = asyncio.get_running_loop().create_task(self._settle_quietly(keys, args))
        self._tasks.add(task)  # settle must not block the request; keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _settle_quietly(self, keys: list[str], args: list[Any]) -> None:
        try:
            await self._evalsha(self._settle, keys, args)
        except self.down_errors as e:
            # Lost: the reservation expires after reservation_ttl_s; the spend is in the ledger.
            self._count_error(e)

    # ---- backend failures ------------------------------------------------------------------------
    def _backend_down(self, scopes, tokens, usd, now, e: BaseException) -> Reservation:
        self._count_error(e)
        if self.settings.on_backend_error == "closed":
            raise GatewayError("The rate-limit store (Redis) is unavailable and this gateway is set to refuse "
                               "requests then (state.on_backend_error: closed); try again shortly.",
                               status=503, type="service_unavailable", code="limits_unavailable")
        return RedisReservation(scopes, tokens, usd, now, counted=False)

    def _count_error(self, e: BaseException) -> None:
        self.errors += 1
        self._on_error()
        now = time.monotonic()
        if now - self._last_logged > 30:  # once per interval, not once per request
            self._last_logged = now
            log.error("Redis (state.counters) unavailable: %s; limits %s while it is down (%d errors so far)",
                      type(e).__name__, "not enforced" if self.settings.on_backend_error == "open" else
                      "refuse every limited request", self.errors)


def _arg(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def _refusal(kind: str, scope: Scope, tokens: int, number: float, now: float) -> RateLimited:
    lim, name = scope.limits, scope.name
    if kind == "rpm":
        return _limited(f"{name} is over its limit of {lim.requests_per_minute} requests per minute",
                        "rate_limit_exceeded", number)
    if kind == "tpm_whole":
        return _limited(f"this request needs ~{tokens} tokens, more than {name}'s whole limit of "
                        f"{lim.tokens_per_minute} tokens per minute", "rate_limit_exceeded", 60)
    if kind == "tpm":
        return _limited(f"{name} is over its limit of {lim.tokens_per_minute} tokens per minute",
                        "rate_limit_exceeded", number)
    if kind == "day":
        return _limited(f"{name} has used its budget of ${lim.usd_per_day:g} for today (UTC): ${number:.4f} spent "
                        "or reserved", "insufficient_quota", day_start(now) + 86400 - now)
    return _limited(f"{name} has used its budget of ${lim.usd_per_month:g} for this month (UTC): "
                    f"${number:.4f} spent or reserved", "insufficient_quota", max(1.0, math.ceil(_next_month(now) - now)))


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisCoordinator:
    """Scheduled work done once across workers and replicas.

    - `leader(name)`: one holder of a lease at a time (SET NX with a TTL, renewed by its holder with a
      compare-and-set script); another replica takes over within `lease_s` once the holder stops
      renewing (it died). Each acquisition increments a fencing counter, kept for logs.
    - `once(name, ttl_s)`: True for exactly one caller per period (SET NX EX): a drift alert is sent
      once per `realert_after_s` whoever computed it, also across a change of leader.
    Redis errors make both answer False (skip this round), logged by the counter store's rule.
    """

    def __init__(self, counters: RedisCounters, lease_s: float = 10.0) -> None:
        self._counters = counters
        self._redis = counters._redis
        self._renew = self._redis.register_script(_RENEW)
        self.prefix = counters.prefix
        self.lease_s = lease_s
        self.token = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.fence: dict[str, int] = {}

    async def leader(self, name: str) -> bool:
        key = f"{self.prefix}:lease:{name}"
        ms = int(self.lease_s * 1000)
        try:
            if await self._renew(keys=[key], args=[self.token, ms]):
                return True
            if await self._redis.set(key, self.token, nx=True, px=ms):
                self.fence[name] = int(await self._redis.incr(f"{self.prefix}:fence:{name}"))
                log.info("this process leads %s (fencing token %d)", name, self.fence[name])
                return True
        except self._counters.down_errors as e:
            self._counters._count_error(e)
        return False

    async def once(self, name: str, ttl_s: float) -> bool:
        try:
            return bool(await self._redis.set(f"{self.prefix}:once:{name}", self.token, nx=True,
                                              px=max(1, int(ttl_s * 1000))))
        except self._counters.down_errors as e:
            self._counters._count_error(e)
            return False
