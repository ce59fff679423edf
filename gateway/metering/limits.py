"""Rate limits and budgets per key and per group: requests/min, tokens/min, USD per day and month.

Checked before the call with an estimate (reserved), reconciled after with the real usage. Windows
are sliding 60 s windows of 1 s buckets; budgets follow UTC days and months. The `CounterStore`
protocol is what a shared store (e.g. Redis, for several gateway replicas) would implement; the
in-process store keeps everything in this process and is rebuilt from the ledger on start-up.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import GatewayError


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    usd_per_day: float | None = Field(default=None, ge=0)
    usd_per_month: float | None = Field(default=None, ge=0)

    @property
    def needs_tokens(self) -> bool:
        return self.tokens_per_minute is not None or self.usd_per_day is not None or self.usd_per_month is not None


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a limit applies to: `key:<name>` or `group:<name>`."""

    name: str
    limits: Limits


@dataclass(slots=True)
class Reservation:
    scopes: tuple[Scope, ...]
    tokens: int
    usd: float
    at: float


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"


def day_start(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()


def month_start(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    return dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp()


def _next_month(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp()


class CounterStore(Protocol):
    async def reserve(self, scopes: tuple[Scope, ...], tokens: int, usd: float, now: float) -> Reservation:
        """Check every scope's limits and, if all pass, count the request; else raise RateLimited."""
        ...

    def settle(self, reservation: Reservation, tokens: int, usd: float, now: float | None = None) -> None:
        """Replace the reserved estimate by real usage. Must not block (a remote store schedules it)."""
        ...


@dataclass
class _Window:
    """Sliding 60 s window in 1 s buckets."""

    buckets: dict[int, float] = field(default_factory=dict)

    def total(self, now: float) -> float:
        cutoff = int(now) - 59
        stale = [s for s in self.buckets if s < cutoff]
        for s in stale:
            del self.buckets[s]
        return sum(self.buckets.values())

    def add(self, amount: float, now: float) -> None:
        sec = int(now)
        self.buckets[sec] = self.buckets.get(sec, 0.0) + amount

    def seconds_until_below(self, limit: float, need: float, now: float) -> float:
        running = self.total(now)
        for sec in sorted(self.buckets):
            if running + need <= limit:
                break
            running -= self.buckets[sec]
            if running + need <= limit:
                return max(1.0, sec + 60 - now)
        return 60.0


class InProcessCounters:
    def __init__(self) -> None:
        self.requests: dict[str, _Window] = defaultdict(_Window)
        self.tokens: dict[str, _Window] = defaultdict(_Window)
        self.day: dict[str, float] = defaultdict(float)
        self.month: dict[str, float] = defaultdict(float)
        self._day_start = day_start(time.time())
        self._month_start = month_start(time.time())

    def seed_spend(self, day: dict[str, float], month: dict[str, float]) -> None:
        """Start-up: spend so far this UTC day and month, from the ledger."""
        self.day.update(day)
        self.month.update(month)

    def _roll(self, now: float) -> None:
        if now >= self._day_start + 86400 or now < self._day_start:
            self._day_start = day_start(now)
            self.day.clear()
        if month_start(now) != self._month_start:
            self._month_start = month_start(now)
            self.month.clear()

    async def reserve(self, scopes: tuple[Scope, ...], tokens: int, usd: float, now: float) -> Reservation:
        self._roll(now)
        for scope in scopes:  # check all before counting any, so a refusal counts nothing
            self._check(scope, tokens, usd, now)
        for scope in scopes:
            self.requests[scope.name].add(1, now)
            if tokens:
                self.tokens[scope.name].add(tokens, now)
            self.day[scope.name] += usd
            self.month[scope.name] += usd
        return Reservation(scopes, tokens, usd, now)

    def _check(self, scope: Scope, tokens: int, usd: float, now: float) -> None:
        lim, name = scope.limits, scope.name
        if lim.requests_per_minute is not None:
            window = self.requests[name]
            if window.total(now) + 1 > lim.requests_per_minute:
                wait = window.seconds_until_below(lim.requests_per_minute, 1, now)
                raise _limited(f"{name} is over its limit of {lim.requests_per_minute} requests per minute",
                               "rate_limit_exceeded", wait)
        if lim.tokens_per_minute is not None:
            if tokens > lim.tokens_per_minute:
                raise _limited(f"this request needs ~{tokens} tokens, more than {name}'s whole limit of "
                               f"{lim.tokens_per_minute} tokens per minute", "rate_limit_exceeded", 60)
            window = self.tokens[name]
            if window.total(now) + tokens > lim.tokens_per_minute:
                wait = window.seconds_until_below(lim.tokens_per_minute, tokens, now)
                raise _limited(f"{name} is over its limit of {lim.tokens_per_minute} tokens per minute",
                               "rate_limit_exceeded", wait)
        # 1e-9: a hundred $0.01 requests add up to 1.0000000000000007, and must fit a $1 budget.
        if lim.usd_per_day is not None and self.day[name] + usd > lim.usd_per_day + 1e-9:
            raise _limited(f"{name} has used its budget of ${lim.usd_per_day:g} for today (UTC): "
                           f"${self.day[name]:.4f} spent", "insufficient_quota", self._day_start + 86400 - now)
        if lim.usd_per_month is not None and self.month[name] + usd > lim.usd_per_month + 1e-9:
            raise _limited(f"{name} has used its budget of ${lim.usd_per_month:g} for this month (UTC): "
                           f"${self.month[name]:.4f} spent", "insufficient_quota", _next_month(now) - now)

    def settle(self, reservation: Reservation, tokens: int, usd: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._roll(now)
        same_day = reservation.at >= self._day_start
        same_month = reservation.at >= self._month_start
        for scope in reservation.scopes:
            if tokens != reservation.tokens:
                # Corrected in the second the tokens were reserved, so the window expires them together.
                self.tokens[scope.name].add(tokens - reservation.tokens, reservation.at)
            if same_day:
                self.day[scope.name] += usd - reservation.usd
            else:
                self.day[scope.name] += usd
            if same_month:
                self.month[scope.name] += usd - reservation.usd
            else:
                self.month[scope.name] += usd


def _limited(message: str, code: str, retry_after: float) -> RateLimited:
    seconds = max(1, math.ceil(retry_after))
    return RateLimited(message + f"; retry after {seconds}s.", code=code, headers={"Retry-After": str(seconds)})
