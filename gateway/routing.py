"""Public model names -> ordered (upstream, target model) pairs, with retries, backoff and fallback.

Retry rules: 408/409/429/5xx, connect errors, timeouts and garbage answers are retried on the same
target with jittered exponential backoff (a `Retry-After` is honoured when it fits the budget), then
the next target is tried. 400/413/422 mean the request itself is wrong and stop at once. Streams are
only retried before their first event; after a byte reached the client nothing is retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway.cache.settings import RouteCache

from gateway.errors import GatewayError, InvalidRequest, NotFound, UpstreamFailure
from gateway.exchange import Attempt, Exchange
from gateway.upstreams.base import Upstream, UpstreamError

T = TypeVar("T")


class TargetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstream: str
    model: str = Field(min_length=1)
    # A stand-in (typically the mock) serves only while none of the route's other targets is
    # configured, so a quick start works offline - it never silently replaces a configured upstream.
    stand_in: bool = False


class BackoffConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_s: float = Field(default=0.25, ge=0, le=60)
    max_s: float = Field(default=8.0, ge=0, le=300)
    # A Retry-After longer than this is not waited for: the next target is tried instead.
    max_retry_after_s: float = Field(default=20.0, ge=0, le=3600)


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: list[TargetConfig] = Field(min_length=1)
    retries: int = Field(default=2, ge=0, le=10, description="extra attempts per target")
    timeout_s: float = Field(
        default=120, gt=0, le=3600, description="budget for the whole call (streams: until the first event)"
    )
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    # The response cache on this route (gateway.yaml `cache:` turns it on): off, or another TTL.
    cache: RouteCache = Field(default_factory=RouteCache)
    vision: bool = Field(default=True, description=(
        "the route's models take images; false: a request with an image is refused with a 400 naming the "
        "image, in the client's own API shape, instead of failing at (or being misread by) the upstream"))


@dataclass(slots=True, frozen=True)
class Route:
    name: str
    targets: tuple[tuple[Upstream, str], ...]
    cfg: RouteConfig


Operation = Callable[[Upstream, str], Awaitable[T]]


class Router:
    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes

    def get(self, model: Any) -> Route:
        route = self.routes.get(model) if isinstance(model, str) else None
        if route is None:
            known = ", ".join(sorted(self.routes)) or "(none configured)"
            raise NotFound(f"The model {model!r} does not exist on this gateway. Available models: {known}.",
                           param="model")
        return route

    async def call(self, ex: Exchange, route: Route, op: Operation[T]) -> T:
        cfg = route.cfg
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.timeout_s
        last: UpstreamError | None = None
        trace = ex.trace
        for n, (upstream, model) in enumerate(route.targets):
            for attempt in range(cfg.retries + 1):
                span = None if trace is None else trace.start_attempt(
                    "embeddings" if ex.endpoint == "embeddings" else "chat", upstream.name,
                    getattr(getattr(upstream, "cfg", None), "type", "openai"), model, retry=attempt, fallback=n > 0)
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout_at(deadline):
                        result = await op(upstream, model)
                except UpstreamError as e:
                    last = e
                except TimeoutError:
                    last = UpstreamError("timeout", f"model {route.name!r} got no answer within {cfg.timeout_s:g}s")
                except BaseException:  # cancelled (the client left, a check blocked): the span still ends
                    if span is not None:
                        trace.end_attempt(span, "cancelled")
                    raise
                else:
                    ms = (time.perf_counter() - t0) * 1000
                    ex.upstream_ms += ms
                    ex.served_by = Attempt(upstream.name, model, "ok", ms)
                    ex.attempts.append(ex.served_by)
                    if span is not None:
                        trace.end_attempt(span, "ok")
                    return result
                ms = (time.perf_counter() - t0) * 1000
                ex.upstream_ms += ms
                ex.attempts.append(Attempt(upstream.name, model, last.kind, ms))
                if span is not None:
                    trace.end_attempt(span, last.kind, last.retry_after)
                if last.client_fault or loop.time() >= deadline:
                    raise failure(route, ex, last)
                if not last.retryable or attempt == cfg.retries:
                    break
                wait = _backoff(cfg.backoff, failures(ex) - 1, last.retry_after)
                if wait is None or loop.time() + wait >= deadline:
                    break
                t_wait = time.perf_counter()
                await asyncio.sleep(wait)
                ex.upstream_ms += (time.perf_counter() - t_wait) * 1000
        assert last is not None
        raise failure(route, ex, last)


def _backoff(cfg: BackoffConfig, attempt: int, retry_after: float | None) -> float | None:
    if retry_after is not None:
        if retry_after > cfg.max_retry_after_s:
            return None
        return retry_after + random.uniform(0, 0.1 * retry_after + 0.01)
    # Exponential steps with 25% jitter: retries of many clients still spread apart, but a retry is
    # never immediate and each wait is clearly longer than the last (until max_s) - what a struggling
    # upstream needs, and what a chaos tester such as llmock checks for. (Full jitter could wait ~0.)
    step = min(cfg.max_s, cfg.base_s * 2**attempt)
    return step * random.uniform(0.75, 1.0)


def failures(ex: Exchange) -> int:
    """Failed attempts of this request so far, across retries, fallbacks and stream resumes: the
    backoff step keeps growing over the whole request instead of restarting."""
    return sum(1 for a in ex.attempts if a.outcome != "ok")


def backoff_delay(cfg: BackoffConfig, attempt: int) -> float:
    """The wait before retry number `attempt` (0-based) when no Retry-After was given."""
    return _backoff(cfg, attempt, None) or 0.0


def failure(route: Route, ex: Exchange, last: UpstreamError) -> GatewayError:
    """The client-facing error once a route gave up, shaped so the openai SDK raises the right class."""
    tried = "; ".join(f"{a.upstream}/{a.model}: {a.outcome}" for a in ex.attempts)
    if last.client_fault:
        return InvalidRequest(last.message, code="upstream_rejected_request")
    if last.status == 429:
        headers = {"Retry-After": str(max(1, round(last.retry_after)))} if last.retry_after else {}
        return UpstreamFailure(
            f"Upstream rate limit for model {route.name!r}; tried: {tried}. {last.message}",
            status=429, type="rate_limit_error", code="rate_limit_exceeded", headers=headers,
        )
    if last.status in (503, 529):  # overloaded (Anthropic's 529): the client may come back later
        headers = {"Retry-After": str(max(1, round(last.retry_after)))} if last.retry_after else {}
        return UpstreamFailure(
            f"Upstream overloaded for model {route.name!r}; tried: {tried}. {last.message}",
            status=503, code="upstream_overloaded", headers=headers,
        )
    if last.kind == "timeout":
        return UpstreamFailure(
            f"Upstream timed out for model {route.name!r}; tried: {tried}.", status=504, code="upstream_timeout"
        )
    # Nothing listened at any target (refused / unresolvable): say so apart from overload or errors,
    # so a client (the eval runner) can stop instead of retrying a server that is not there.
    unreachable = bool(ex.attempts) and all(a.outcome == "connect" for a in ex.attempts)
    return UpstreamFailure(
        f"No upstream could serve model {route.name!r}; tried: {tried}. Last error: {last.message}",
        code="upstream_unreachable" if unreachable else "upstream_unavailable",
    )
