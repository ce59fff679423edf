"""The upstream protocol and the classification of upstream failures (retry? fall back?)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from gateway.exchange import Exchange


class UpstreamError(Exception):
    """An upstream call failed. `kind` is short and loggable: http_429, connect, timeout, bad_response,
    stream_cut. `message` never contains the upstream's API key (callers scrub it)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth trying the same target again."""
        if self.status is None:
            # A stream cut or an error event before any content reached the client: as transient as
            # a dropped connection (stream_relay holds headers until content, so a retry is invisible).
            return self.kind in ("connect", "timeout", "bad_response", "stream_cut", "upstream_error")
        return self.status in (408, 409, 429) or self.status >= 500

    @property
    def client_fault(self) -> bool:
        """The request itself is wrong (400, 413, 422): no other target will accept it either."""
        return self.status in (400, 413, 422)


class UpstreamStream(Protocol):
    """An open streamed response: async-iterates SSE `data` payloads (bytes), stops at [DONE]/EOF."""

    saw_done: bool

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def __anext__(self) -> bytes: ...
    def take_ready(self) -> list[bytes]: ...
    async def aclose(self) -> None: ...


class Upstream(Protocol):
    name: str
    stream_usage: bool  # may the gateway add stream_options.include_usage to streamed requests

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> UpstreamStream: ...
    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def close(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` is delta-seconds or an HTTP date (RFC 9110 10.2.3); also accept OpenAI's
    `retry-after-ms`-style fractional seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_object(raw: bytes, what: str) -> dict[str, Any]:
    """Decode an upstream's JSON object (an answer, or one stream event) or fail as `bad_response`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("bad_response", f"upstream sent {what} that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError("bad_response", f"upstream sent {what} that is not a JSON object")
    return data
