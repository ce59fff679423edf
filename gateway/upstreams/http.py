"""What every HTTP upstream shares: the app's one pooled aiohttp session, timeouts, sending a request,
reading an error answer (status, message, Retry-After; the key scrubbed), and reading an SSE stream
event by event. The API types (openai.py, azure_openai.py, anthropic.py) add their paths, headers
and translations."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.exchange import Exchange
from gateway.sse import DONE, SSEDecoder
from gateway.upstreams.base import UpstreamError, parse_object, parse_retry_after
from gateway.upstreams.sanitize import client_message

_ERROR_BODY_LIMIT = 64 * 1024


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connect_s: float = Field(default=10, gt=0, le=600)
    read_s: float = Field(default=120, gt=0, le=3600, description="longest silence between bytes")


class HttpUpstreamSettings(BaseModel):
    """What every HTTP upstream type's gateway.yaml entry has besides its address and credentials."""

    model_config = ConfigDict(extra="forbid")
    required: bool = Field(default=True, description="if false and its credentials are missing, the upstream is "
                                                     "skipped (with a warning)")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every request")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(default=100, ge=1, le=10_000)

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is missing) that the type needs beyond its key's env var; checked at start-up."""
        return []


class HttpPool:
    """The app's one ClientSession, opened and closed by a cleanup_ctx in app.py."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(), auto_decompress=True
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def get(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("HTTP pool is not open")
        return self.session


class HttpUpstream:
    """An upstream reached over HTTP; `headers` are sent with every request (auth included)."""

    def __init__(self, name: str, pool: HttpPool, api_key: str | None, headers: dict[str, str],
                 timeouts: Timeouts, max_connections: int) -> None:
        self.name = name
        self._pool = pool
        self._api_key = api_key
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect_s, sock_read=timeouts.read_s)
        self._slots = asyncio.Semaphore(max_connections)

    async def close(self) -> None:
        pass  # the pool is shared and closed by the app

    async def _open_sse(self, ex: Exchange, url: str, payload: dict[str, Any], *,
                        content_type: str = "text/event-stream", reader=None):
        """An open stream; `reader(resp, slots, scrub)` reads another framing than server-sent events."""
        await self._slots.acquire()
        try:
            resp = await self._send(ex, url, payload)
            if resp.status != 200:
                async with resp:
                    raise await self._http_error(resp)
            if not resp.content_type.startswith(content_type):
                resp.close()
                raise UpstreamError("bad_response", f"upstream sent {resp.content_type!r}, not an event stream")
        except BaseException:
            self._slots.release()
            raise
        return (reader or _HttpStream)(resp, self._slots, self._scrub)

    def _signed(self, url: str, data: bytes) -> dict[str, str]:
        """Headers that depend on the exact request (a signature); none by default."""
        return {}

    # ---- plumbing -------------------------------------------------------------------------------
    async def _post_json(self, ex: Exchange, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._slots:
            resp = await self._send(ex, url, payload)
            async with resp:
                if resp.status != 200:
                    raise await self._http_error(resp)
                try:
                    raw = await resp.read()
                except TimeoutError:
                    raise UpstreamError("timeout", "upstream stopped sending its answer") from None
                except aiohttp.ClientError as e:
                    raise UpstreamError("bad_response", f"upstream answer broke off ({type(e).__name__})") from None
        return parse_object(raw, "an answer")

    async def _send(self, ex: Exchange, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        data = orjson.dumps(payload)
        headers = {**self._headers, **self._signed(url, data), "x-gateway-request-id": ex.id}
        if ex.trace is not None:
            headers["traceparent"] = ex.trace.upstream_traceparent()
        try:
            return await self._pool.get().post(url, data=data, headers=headers, timeout=self._timeout)
        except TimeoutError:
            raise UpstreamError("timeout", f"upstream {self.name!r} did not answer in time") from None
        except aiohttp.ClientConnectorError as e:
            raise UpstreamError("connect", f"cannot connect to upstream {self.name!r} ({type(e).__name__})") from None
        except aiohttp.ClientError as e:
            raise UpstreamError("connect", f"connection to upstream {self.name!r} failed ({type(e).__name__})") from None

    async def _http_error(self, resp: aiohttp.ClientResponse) -> UpstreamError:
        try:
            raw = await resp.content.read(_ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        message = f"upstream answered HTTP {resp.status}"
        try:
            body = orjson.loads(raw)
            err = body.get("error", body.get("message"))  # AWS puts the message at the top level
            detail = err.get("message") if isinstance(err, dict) else err
            if isinstance(detail, str) and detail:
                message += f": {detail}"
        except (orjson.JSONDecodeError, AttributeError):
            pass
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        if retry_after is None and (ms := resp.headers.get("retry-after-ms")):
            retry_after = (parse_retry_after(ms) or 0) / 1000 or None
        return UpstreamError(
            f"http_{resp.status}", self._scrub(message), status=resp.status, retry_after=retry_after
        )

    def _scrub(self, text: str) -> str:
        # Upstreams sometimes quote the key they were given ("Incorrect API key provided: sk-..."),
        # internal addresses or whole pages: the client sees a bounded, sanitised message.
        return client_message(text, upstream=self.name, key=self._api_key or None)


class FramedStream:
    """An open streamed answer read event by event: async-iterates payloads (bytes), stops at the
    end of the answer or EOF. Subclasses decode one framing: `_decode(chunk)` appends the payloads of
    whatever complete events a network read finished; `_pending()` says a cut left half an event."""

    cut_message = "upstream closed the stream in the middle of an event"

    def __init__(self, resp: aiohttp.ClientResponse, slots: asyncio.Semaphore, scrub) -> None:
        self._resp = resp
        self._slots = slots
        self._scrub = scrub
        self._events: collections.deque[bytes] = collections.deque()
        self._eof = False
        self._closed = False
        self.saw_done = False

    def _decode(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _pending(self) -> bool:
        raise NotImplementedError

    def __aiter__(self) -> FramedStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._events:
            if self._eof or self.saw_done:
                raise StopAsyncIteration
            try:
                chunk = await self._resp.content.readany()
            except TimeoutError:
                raise UpstreamError("timeout", "upstream went silent mid-stream") from None
            except aiohttp.ClientError as e:
                raise UpstreamError("stream_cut", f"upstream stream broke off ({type(e).__name__})") from None
            if not chunk:
                self._eof = True
                if self._pending():
                    raise UpstreamError("stream_cut", self.cut_message)
                continue
            self._decode(chunk)
        return self._events.popleft()

    def take_ready(self) -> list[bytes]:
        """Events already received and decoded (no waiting)."""
        out = list(self._events)
        self._events.clear()
        return out

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.saw_done or self._eof:
            self._resp.release()
        else:
            self._resp.close()  # unread data: the connection must not go back to the pool
        self._slots.release()


class _HttpStream(FramedStream):
    """Server-sent events; OpenAI-style streams end with a `[DONE]` event."""

    def __init__(self, resp: aiohttp.ClientResponse, slots: asyncio.Semaphore, scrub) -> None:
        super().__init__(resp, slots, scrub)
        self._decoder = SSEDecoder()

    def _decode(self, chunk: bytes) -> None:
        for event in self._decoder.feed(chunk):
            if event == DONE:
                self.saw_done = True
                break
            self._events.append(event)

    def _pending(self) -> bool:
        return bool(self._decoder.pending())


class TranslatedStream:
    """Another API's event stream read as chat-completion chunk payloads (what the relay consumes).
    `translator.feed(event)` gives the chunks for one event; `translator.done` says the answer is
    complete (Anthropic's message_stop, Gemini's finishReason), which is what `saw_done` reports."""

    def __init__(self, inner: _HttpStream, translator) -> None:
        self._inner = inner
        self._tr = translator
        self._out: list[bytes] = []

    @property
    def saw_done(self) -> bool:
        return self._tr.done

    def __aiter__(self) -> TranslatedStream:
        return self

    def _translate(self, payload: bytes) -> None:
        for chunk in self._tr.feed(parse_object(payload, "a stream event")):
            self._out.append(orjson.dumps(chunk))
        if self._tr.done:
            self._inner.saw_done = True  # nothing follows message_stop: the connection can be reused

    async def __anext__(self) -> bytes:
        while not self._out:
            if self._tr.done:
                raise StopAsyncIteration
            self._translate(await anext(self._inner))
        return self._out.pop(0)

    def take_ready(self) -> list[bytes]:
        for payload in self._inner.take_ready():
            self._translate(payload)
        out, self._out = self._out, []
        return out

    async def aclose(self) -> None:
        await self._inner.aclose()
