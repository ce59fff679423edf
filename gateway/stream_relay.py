"""Streamed chat completions: relay the upstream's events, with usage accounting and stream guards.

Nothing is retried once the first byte has reached the client; a failure after that ends the stream
with an OpenAI-style error event, never a silent truncation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.checks.pii import PSEUDONYMS
from gateway.exchange import Exchange
from gateway.keys import METER
from gateway.pii.anonymize import Restorer
from gateway.pipeline import Pipeline
from gateway.routing import Route
from gateway.runtime import Runtime
from gateway.sse import DONE_EVENT, encode
from gateway.stream_guard import StreamGuard
from gateway.upstreams.base import Upstream, UpstreamError, parse_object
from gateway.upstreams.sanitize import client_message

log = logging.getLogger("gateway.relay")


async def relay_stream(
    request: web.Request, rt: Runtime, ex: Exchange, route: Route, pipeline: Pipeline, alongside_checks
) -> web.StreamResponse:
    client_usage = bool((ex.body.get("stream_options") or {}).get("include_usage"))
    # Ask for usage even when the client did not (and drop that chunk again before it reaches the
    # client), so streamed requests are billed on the upstream's figures, not on our estimate.
    with_usage = {**ex.body, "stream_options": {**(ex.body.get("stream_options") or {}), "include_usage": True}}

    async def open_and_peek(upstream: Upstream, model: str):
        # Waiting for the first event keeps retries and fallbacks possible: nothing has reached the
        # client yet. After this point, failures end the stream with an error event instead.
        wants_usage = ex.metered and not client_usage and upstream.stream_usage
        stream = await upstream.open_stream(ex, model, with_usage if wants_usage else ex.body)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            await stream.aclose()
            raise UpstreamError("bad_response", "upstream stream ended before its first event") from None
        except BaseException:
            await stream.aclose()
            raise
        return stream, first

    # Opening the stream may overlap the request checks (proxy.alongside_checks): headers are sent only
    # after both are done, so a blocked request never shows the client a byte of the answer.
    stream, first = await alongside_checks(ex, pipeline, rt.router.call(ex, route, open_and_peek))
    guard = StreamGuard(ex, pipeline) if pipeline.response_checks else None
    restorer = Restorer(ex.state[PSEUDONYMS]) if PSEUDONYMS in ex.state else None
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **ex.response_headers(),
    })
    template: dict[str, Any] = {}
    finished: set[int] = set()
    seen: set[int] = set()
    received: list[str] = []  # everything the upstream generated, for a token estimate if needed
    upstream_usage: dict[str, Any] | None = None

    def settle() -> None:
        if ex.metered and ex.usage is None:
            request.app[METER].settle(ex, rt, upstream_usage, "".join(received), template.get("model"))

    try:
        await resp.prepare(request)
        batch = [first, *stream.take_ready()]
        while batch:
            # Events that arrived together are written together: one write per network read, not
            # per event, which keeps streaming overhead close to a raw byte relay.
            out = bytearray()
            for payload in batch:
                chunk = parse_object(payload, "a stream event")
                if not template:
                    template = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
                if isinstance(chunk.get("error"), dict):
                    raise UpstreamError("upstream_error", client_message(
                        str(chunk["error"].get("message") or "upstream stream error"), upstream=_upstream(ex)))
                _track_choices(chunk, seen, finished, received)
                if restorer is not None and chunk.get("choices"):
                    chunk = _restore_chunk(restorer, chunk)
                    payload = orjson.dumps(chunk)
                if isinstance(chunk.get("usage"), dict):
                    upstream_usage = chunk["usage"]
                    if not client_usage:
                        if not chunk.get("choices"):
                            continue  # the usage chunk the client did not ask for
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                        payload = orjson.dumps(chunk)
                if guard is None:
                    out += encode(payload)
                    continue
                for piece in await guard.on_chunk(chunk):
                    out += encode(orjson.dumps(piece))
                if guard.violation:
                    break
            if out:
                await resp.write(bytes(out))
            if guard is not None and guard.violation:
                break
            t0 = time.perf_counter()
            try:
                batch = [await anext(stream), *stream.take_ready()]
            except StopAsyncIteration:
                batch = []
            finally:
                ex.upstream_ms += (time.perf_counter() - t0) * 1000
        if guard is None or not guard.violation:
            if not stream.saw_done and (not seen or seen - finished):
                raise UpstreamError("stream_cut", "upstream closed the stream before it finished")
        settle()
        await resp.write(encode(orjson.dumps(_final_chunk(template, ex))))
        await resp.write(DONE_EVENT)
    except UpstreamError as e:
        # Headers are gone already: end the stream with an error event (the openai SDK raises
        # APIError on it) instead of a silent truncation.
        ex.stream_error = e.kind
        if guard is not None:
            for out in await guard.flush():
                await _write_quietly(resp, encode(orjson.dumps(out)))
        settle()
        error = {"message": e.message, "type": "upstream_error", "code": e.kind}
        await _write_quietly(resp, encode(orjson.dumps({"error": error, "gateway": ex.gateway_info()})))
        await _write_quietly(resp, DONE_EVENT)
    except ConnectionError:
        ex.stream_error = "client_disconnected"
        log.info("client went away mid-stream; upstream request %s cancelled", ex.id)
    finally:
        if ex.stream_error is None and ex.usage is None and not stream.saw_done:
            ex.stream_error = "client_disconnected"  # cancelled by aiohttp when the client left
        settle()  # whatever happened, what was generated is recorded (estimated if need be)
        await stream.aclose()
        if guard is not None:
            await guard.close()
    return resp


def _track_choices(chunk: dict[str, Any], seen: set[int], finished: set[int], received: list[str]) -> None:
    for c in chunk.get("choices") or ():
        idx = c.get("index", 0)
        seen.add(idx)
        if c.get("finish_reason"):
            finished.add(idx)
        delta = c.get("delta") or {}
        if isinstance(delta.get("content"), str):
            received.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments")
            if isinstance(args, str):
                received.append(args)


def _restore_chunk(restorer: Restorer, chunk: dict[str, Any]) -> dict[str, Any]:
    """Pseudonymized values back into the streamed text and tool-call arguments; a placeholder split
    across chunks is held until it is complete (and released with the choice's finish at the latest)."""
    choices = []
    for c in chunk["choices"]:
        delta = dict(c.get("delta") or {})
        idx = c.get("index", 0)
        if isinstance(delta.get("content"), str):
            delta["content"] = restorer.feed(idx, delta["content"])
        calls = []
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                call = {**call, "function": {**fn, "arguments": restorer.feed((idx, call.get("index", 0)), fn["arguments"])}}
            calls.append(call)
        if calls:
            delta["tool_calls"] = calls
        if c.get("finish_reason"):
            rest = restorer.flush(idx)
            if rest:
                delta["content"] = (delta.get("content") or "") + rest
            for key in restorer.held_keys(idx):
                held = restorer.flush(key)
                if held:
                    delta.setdefault("tool_calls", []).append({"index": key[1], "function": {"arguments": held}})
        choices.append({**c, "delta": delta})
    return {**chunk, "choices": choices}


def _final_chunk(template: dict[str, Any], ex: Exchange) -> dict[str, Any]:
    """The chunk before [DONE] carrying the gateway's verdicts; `choices` is empty like a usage chunk."""
    return {**template, "object": "chat.completion.chunk", "choices": [], "gateway": ex.gateway_info()}


async def _write_quietly(resp: web.StreamResponse, data: bytes) -> None:
    try:
        await resp.write(data)
    except ConnectionError:
        pass


def _upstream(ex) -> str:
    return ex.served_by.upstream if ex.served_by is not None else ""
