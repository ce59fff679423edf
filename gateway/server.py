"""The HTTP listener: aiohttp's server with the protections a public port needs.

aiohttp alone waits for a request's headers as long as the client likes (its keep-alive timer
only closes idle connections, after an hour by default), lets one address open any number of
connections, and logs a malformed request with the raw bytes it received - headers and body
included. Here each connection gets:
  - a header deadline: from the first byte of a request, its headers must arrive within
    `server.header_timeout_s`, or the client gets 408 and the connection closes;
  - a cap on concurrent connections per client address (`server.max_connections_per_client`):
    one more gets 429 and is closed;
  - error logging that names the peer and the error class, never what the client sent.
The body deadline (`server.body_timeout_s`) is applied where bodies are read (proxy.read_body).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("gateway.server")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    max_connections_per_client: int = 256


def _raw_error(status: int, reason: str, message: str, code: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol with a header deadline, a per-address cap, quiet logs."""

    def __init__(self, guard: GuardedServer, **kwargs: Any) -> None:
        super().__init__(guard.inner, **kwargs)
        self._guard = guard
        self._peer: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) else str(peer)
        limits = self._guard.limits()
        self._guard.per_client[self._peer] += 1
        if self._guard.per_client[self._peer] > limits.max_connections_per_client:
            self._guard.refused += 1
            transport.write(_raw_error(429, "Too Many Requests",
                                       f"Too many concurrent connections from this address (limit "
                                       f"{limits.max_connections_per_client}, server.max_connections_per_client).",
                                       "too_many_connections"))
            transport.close()
            self._refused = True
            return
        self._refused = False
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        if self._peer is not None:
            self._guard.per_client[self._peer] -= 1
            if self._guard.per_client[self._peer] <= 0:
                del self._guard.per_client[self._peer]
            self._peer = None
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._header_timer is None and data and not self._request_in_progress and not self._messages:
            self._header_timer = self._loop.call_later(self._guard.limits().header_timeout_s, self._headers_late)
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a request's headers are complete
            self._cancel_header_timer()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._request_in_progress or self._messages or self.transport is None:
            return
        self._guard.timed_out += 1
        limit = self._guard.limits().header_timeout_s
        log.info("closed a connection from %s: request headers incomplete after %gs", self._peer, limit)
        self.transport.write(_raw_error(408, "Request Timeout",
                                        f"The request headers did not arrive within {limit:g}s "
                                        "(server.header_timeout_s).", "request_timeout"))
        self.force_close()
        self.transport.close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp passes the exception, whose text holds the raw request (Authorization header,
        # prompt): log its class only.
        exc = kw.get("exc_info")
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        log.warning("malformed or failed HTTP request from %s (%s)", self._peer, kind)

    def log_debug(self, *args: Any, **kw: Any) -> None:
        pass  # same reason: aiohttp's debug lines may quote the request


class GuardedServer:
    """Wraps aiohttp's Server (the protocol factory a listening socket calls per connection)."""

    def __init__(self, inner: Any, limits: Callable[[], ConnectionLimits]) -> None:
        self.inner = inner
        self.limits = limits
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self.inner._loop, **self.inner._kwargs)

    def __getattr__(self, name: str) -> Any:  # shutdown(), connections, requests_count ...
        return getattr(self.inner, name)


class GatewayRunner(web.AppRunner):
    """AppRunner whose sockets accept connections through GuardedServer."""

    def __init__(self, app: web.Application, limits: Callable[[], ConnectionLimits], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self.guard: GuardedServer | None = None

    async def _make_server(self) -> Any:
        self.guard = GuardedServer(await super()._make_server(), self._limits)
        return self.guard


def connection_limits(app: web.Application) -> Callable[[], ConnectionLimits]:
    """Read per connection from the running policy set, so an edit of gateway.yaml applies."""
    from gateway.keys import HOLDER

    def current() -> ConnectionLimits:
        s = app[HOLDER].current.settings
        return ConnectionLimits(s.header_timeout_s, s.max_connections_per_client)

    return current


class AddressInUse(RuntimeError):
    pass


async def start(app: web.Application, host: str, port: int, *, shutdown_timeout: float,
                handler_cancellation: bool = True, reuse_port: bool = False) -> GatewayRunner:
    """Set the app up and listen; `AddressInUse` names the address if it cannot be had."""
    import errno

    runner = GatewayRunner(app, connection_limits(app), access_log=None, handler_cancellation=handler_cancellation,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    except OSError as e:
        await runner.cleanup()
        if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            why = {errno.EADDRINUSE: "is already in use (another gateway or program listens there)",
                   errno.EACCES: "needs privileges this user does not have",
                   errno.EADDRNOTAVAIL: "is not an address of this machine"}[e.errno]
            raise AddressInUse(f"cannot listen on {host}:{port}: the address {why}; choose another with "
                               "--host / --port") from None
        raise
    return runner


def serve(app: web.Application, host: str, port: int, *, shutdown_timeout: float, loop=None,
          on_ready: Callable[[], None] | None = None, reuse_port: bool = False) -> int:
    """Run until SIGINT / SIGTERM, then drain in-flight requests (up to `shutdown_timeout`) and
    close every resource (cleanup_ctx). Returns the process exit code."""
    import signal
    import sys

    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    try:
        from gateway.state.config import StateError

        try:
            runner = loop.run_until_complete(start(app, host, port, shutdown_timeout=shutdown_timeout,
                                                   reuse_port=reuse_port))
        except (AddressInUse, StateError) as e:  # a start-up problem the user fixes: a message, not a traceback
            print(f"gateway: {e}", file=sys.stderr)
            return 2
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready()
        loop.run_until_complete(stop.wait())
        loop.run_until_complete(runner.cleanup())
        return 0
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
