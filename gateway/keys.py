"""Typed keys for state kept on the aiohttp app and request (no module-level globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.cache.service import ResponseCache
    from gateway.dialects.stored_responses import StoredResponses
    from gateway.exchange import Exchange
    from gateway.metering.meter import Meter
    from gateway.reload import RuntimeHolder
    from gateway.upstreams.openai import HttpPool

HOLDER: web.AppKey[RuntimeHolder] = web.AppKey("holder")
POOL: web.AppKey[HttpPool] = web.AppKey("pool")
METER: web.AppKey[Meter] = web.AppKey("meter")
EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("exchange")
TRACING: web.AppKey[object] = web.AppKey("tracing")  # gateway.telemetry.tracing.Tracing, or None
TRACE: web.RequestKey[object] = web.RequestKey("trace")  # the request's RequestTrace, or None
CACHE: web.AppKey[ResponseCache | None] = web.AppKey("cache")  # None when gateway.yaml's cache is off
RESPONSES: web.AppKey[StoredResponses] = web.AppKey("responses")  # stored Responses-API responses
