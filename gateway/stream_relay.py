"""Streamed chat completions: relay the upstream's events, with usage accounting and stream guards.

Two things keep a flaky upstream's faults away from the client:
  - Headers are held until the upstream has sent a content-bearing event (text, a tool call, a
    finish reason or usage; or HOLD_BYTES of anything): a fault before that is an ordinary failed
    attempt, retried or failed over like a non-streamed call.
  - A fault after content reached the client (cut, stall, malformed event, error event) is resumed
    by replay when the answer so far is plain text of one choice: the same request is sent again
    (within the route's retries), the new stream's text is checked against what was already
    delivered, and only what follows it is relayed. A replay that says something else ends the
    stream with an OpenAI-style error event, as does running out of retries: never a silent
    truncation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.cache.replay import CachedStream, StreamAssembler
from gateway.cache.service import answer_complete
from gateway.checks.pii import PSEUDONYMS
from gateway.errors import GatewayError
from gateway.exchange import Attempt, Exchange
from gateway.keys import CACHE, METER
from gateway.pii.anonymize import Restorer
from gateway.pipeline import Pipeline
from gateway.routing import Route, backoff_delay, failures
from gateway.runtime import Runtime
from gateway.sse import DONE_EVENT, encode
from gateway.stream_guard import StreamGuard
from gateway.telemetry.content import attach as trace_content
from gateway.upstreams.base import Upstream, UpstreamError, parse_object
from gateway.upstreams.sanitize import client_message

log = logging.getLogger("gateway.relay")

HOLD_BYTES = 8192  # at most this much of an upstream's stream is held back before headers are sent


class Diverged(Exception):
    """A replayed stream does not repeat what the client already has."""


def _bears_content(chunk: dict[str, Any]) -> bool:
    if isinstance(chunk.get("usage"), dict):
        return True
    for c in chunk.get("choices") or ():
        delta = c.get("delta") or {}
        if c.get("finish_reason") or delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
            return True
    return False


def _check_event(ex: Exchange, payload: bytes) -> dict[str, Any]:
    chunk = parse_object(payload, "a stream event")
    if isinstance(chunk.get("error"), dict):
        raise UpstreamError("upstream_error", client_message(
            str(chunk["error"].get("message") or "upstream stream error"), upstream=_upstream(ex)))
    return chunk


async def relay_stream(
    request: web.Request, rt: Runtime, ex: Exchange, route: Route, pipeline: Pipeline, alongside_checks,
    *, cached: CachedStream | None = None, plan=None,
) -> web.StreamResponse:
    """`cached`: a cache hit played back instead of an upstream stream; `plan`: a cacheable miss,
    whose answer is stored once it has streamed to the end unchanged (gateway/cache/service.py)."""
    client_usage = bool((ex.body.get("stream_options") or {}).get("include_usage"))
    # Ask for usage even when the client did not (and drop that chunk again before it reaches the
    # client), so streamed requests are billed on the upstream's figures, not on our estimate.
    with_usage = {**ex.body, "stream_options": {**(ex.body.get("stream_options") or {}), "include_usage": True}}

    async def open_and_hold(upstream: Upstream, model: str):
        # Reading up to the first content-bearing event keeps retries and fallbacks possible: nothing
        # has reached the client yet. A role-only first chunk proves little (faults often follow it).
        wants_usage = ex.metered and not client_usage and upstream.stream_usage
        stream = await upstream.open_stream(ex, model, with_usage if wants_usage else ex.body)
        held: list[bytes] = []
        size = 0
        try:
            while True:
                try:
                    payload = await anext(stream)
                except StopAsyncIteration:
                    if stream.saw_done and held:
                        break
                    raise UpstreamError("stream_cut", "upstream stream ended before any content") from None
                held.append(payload)
                size += len(payload)
                if _bears_content(_check_event(ex, payload)) or size >= HOLD_BYTES:
                    break
        except BaseException:
            await stream.aclose()
            raise
        return stream, held

    # Opening the stream may overlap the request checks (proxy.alongside_checks): headers are sent only
    # after both are done, so a blocked request never shows the client a byte of the answer.
    if cached is not None:
        stream, held = cached, cached.take_ready()
    else:
        stream, held = await alongside_checks(ex, pipeline, rt.router.call(ex, route, open_and_hold))
    relay = _Relay(request, rt, ex, pipeline, client_usage)
    if plan is not None:
        relay.assembler = StreamAssembler()
    resumes_left = route.cfg.retries if cached is None and _replayable_request(ex.body) else 0
    try:
        await relay.resp.prepare(request)
        batch = held
        while True:
            try:
                await relay.pump(stream, batch)
                break
            except (UpstreamError, Diverged) as e:
                if isinstance(e, Diverged) or resumes_left <= 0 or not relay.resumable():
                    raise UpstreamError("stream_cut", "upstream stream broke off and a replay said something "
                                        "else, so it could not be resumed") if isinstance(e, Diverged) else e
                resumes_left -= 1
                served = ex.served_by
                ex.attempts.append(Attempt(served.upstream if served else "?", served.model if served else "?",
                                           f"{e.kind} mid-stream", 0.0))
                log.info("request %s: upstream stream failed mid-answer (%s); resuming by replay", ex.id, e.kind)
                await stream.aclose()
                await asyncio.sleep(backoff_delay(route.cfg.backoff, failures(ex) - 1))
                try:
                    stream, batch = await rt.router.call(ex, route, open_and_hold)
                except GatewayError as failed:  # no attempt could reopen it: end the client's stream
                    raise UpstreamError(e.kind, f"{e.message}; resuming failed: {failed.message}") from None
                relay.start_replay()
        relay.settle()
        if relay.render is not None:
            await relay.resp.write(relay.render.finish(ex.gateway_info()))
            if ex.dialect.keep is not None:
                await ex.dialect.keep(request.app, ex, relay.render.response)
        else:
            await relay.resp.write(encode(orjson.dumps(_final_chunk(relay.template, ex))) + DONE_EVENT)
        if ex.trace is not None and pipeline.trace_content:  # the answer as the model streamed it
            await trace_content(ex.trace, ex.body.get("messages"), ["".join(relay.text)])
        if relay.assembler is not None and not relay.resumed and not (relay.guard and relay.guard.violation):
            completion = relay.assembler.completion()
            await request.app[CACHE].store_answer(ex, plan, orjson.dumps(completion), answer_complete(completion))
    except UpstreamError as e:
        # Headers are gone already: end the stream with an error event (the openai SDK raises
        # APIError on it) instead of a silent truncation.
        ex.stream_error = e.kind
        await relay.fail(e)
    except ConnectionError:
        ex.stream_error = "client_disconnected"
        log.info("client went away mid-stream; upstream request %s cancelled", ex.id)
    finally:
        if ex.stream_error is None and ex.usage is None and not stream.saw_done:
            ex.stream_error = "client_disconnected"  # cancelled by aiohttp when the client left
        relay.settle()  # whatever happened, what was generated is recorded (estimated if need be)
        await stream.aclose()
        await relay.close()
    return relay.resp


def _replayable_request(body: dict[str, Any]) -> bool:
    """Replay can only be checked on plain text of one choice (logprobs would not line up)."""
    return (body.get("n") in (None, 1)) and not body.get("logprobs")


class _Relay:
    """One client stream, fed by one or more upstream streams (the first, then replays)."""

    def __init__(self, request: web.Request, rt: Runtime, ex: Exchange, pipeline: Pipeline, client_usage: bool):
        self.request, self.rt, self.ex = request, rt, ex
        self.client_usage = client_usage
        self.guard = StreamGuard(ex, pipeline) if pipeline.response_checks else None
        self.restorer = Restorer(ex.state[PSEUDONYMS]) if PSEUDONYMS in ex.state else None
        self.resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **ex.response_headers(),
        })
        self.template: dict[str, Any] = {}
        self.finished: set[int] = set()
        self.seen: set[int] = set()
        self.received: list[str] = []  # everything the upstream generated, for a token estimate if needed
        self.text: list[str] = []  # choice 0's text as the upstream sent it (what a replay must repeat)
        self.tool_calls = False
        self.upstream_usage: dict[str, Any] | None = None
        self.replay: str | None = None  # text a replay must still repeat before its events are relayed
        self.replay_finish = False  # ...and its finish reason too
        self.resumed = False
        self.assembler: StreamAssembler | None = None  # a cacheable miss: the chunks as the upstream sent them
        # Another dialect's client (gateway/dialects/): chunks are re-rendered as its events. Chat
        # clients get the upstream's bytes as they came, which keeps the common path a byte relay.
        self.render = ex.dialect.stream(ex, request.app[METER].estimate_input(ex, rt)) if ex.dialect else None

    def settle(self) -> None:
        ex = self.ex
        if ex.metered and ex.usage is None:
            self.request.app[METER].settle(ex, self.rt, self.upstream_usage, "".join(self.received),
                                           self.template.get("model"))

    def resumable(self) -> bool:
        return not self.tool_calls and self.seen <= {0} and (self.guard is None or not self.guard.violation)

    def start_replay(self) -> None:
        self.replay = "".join(self.text)
        # The client has the finish already (the cut came before usage and [DONE]): the replay must
        # repeat the whole answer and its finish, and only its usage and end are relayed.
        self.replay_finish = 0 in self.finished
        self.resumed = True

    async def pump(self, stream, batch: list[bytes]) -> None:
        """Relay `stream` (its first events already read, in `batch`) to the end."""
        ex, guard, resp = self.ex, self.guard, self.resp
        while batch:
            # Events that arrived together are written together: one write per network read, not
            # per event, which keeps streaming overhead close to a raw byte relay.
            out = bytearray()
            for payload in batch:
                chunk = _check_event(ex, payload)
                if self.assembler is not None:
                    self.assembler.add(chunk)
                if self.replay is not None:
                    chunk = self._skip_replayed(chunk)
                    if chunk is None:
                        continue
                if not self.template:
                    self.template = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
                elif self.resumed:  # the replay's chunks carry its own id: keep the client's stream one
                    chunk = {**chunk, **{k: v for k, v in self.template.items() if k in chunk}}
                    payload = orjson.dumps(chunk)
                self._track(chunk)
                if self.restorer is not None and chunk.get("choices"):
                    chunk = _restore_chunk(self.restorer, chunk)
                    payload = orjson.dumps(chunk)
                if isinstance(chunk.get("usage"), dict):
                    self.upstream_usage = chunk["usage"]
                    if not self.client_usage:
                        if not chunk.get("choices"):
                            continue  # the usage chunk the client did not ask for
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                        payload = orjson.dumps(chunk)
                if guard is None:
                    out += encode(payload) if self.render is None else self.render.feed(chunk)
                    continue
                for piece in await guard.on_chunk(chunk):
                    out += self._encode(piece)
                if guard.violation:
                    break
            if out:
                if ex.first_token_ms is None:
                    ex.first_token_ms = ex.elapsed_ms()
                await resp.write(bytes(out))
            if guard is not None and guard.violation:
                return
            t0 = time.perf_counter()
            try:
                batch = [await anext(stream), *stream.take_ready()]
            except StopAsyncIteration:
                batch = []
            finally:
                ex.upstream_ms += (time.perf_counter() - t0) * 1000
        if self.replay:  # a replay cut before it repeated what the client has (a finish would have diverged)
            raise UpstreamError("stream_cut", "upstream closed the replayed stream before it caught up")
        # Cut: a choice without its finish reason (even if [DONE] came: OpenAI-style servers always send
        # one first), or no [DONE] (what followed the finish, usage included, is missing).
        if self.seen - self.finished or not stream.saw_done:
            raise UpstreamError("stream_cut", "upstream closed the stream before it finished")

    def _skip_replayed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """Drop from a replayed chunk the text the client already has; None if nothing is left."""
        choices = chunk.get("choices") or []
        if not choices:
            return None if not isinstance(chunk.get("usage"), dict) else chunk
        rest = []
        for c in choices:
            if c.get("index", 0) != 0:
                raise Diverged()
            delta = dict(c.get("delta") or {})
            delta.pop("role", None)  # sent already
            if delta.get("tool_calls"):
                raise Diverged()
            content = delta.get("content") or ""
            want = self.replay or ""
            if want.startswith(content):
                self.replay = want[len(content):]
                delta.pop("content", None)
            elif content.startswith(want) and not self.replay_finish:
                delta["content"] = content[len(want):]
                self.replay = ""
            else:
                raise Diverged()
            if c.get("finish_reason"):
                if self.replay:
                    raise Diverged()  # the replay finished before repeating the delivered text
                if self.replay_finish:  # the client has this finish already
                    self.replay_finish = False
                    c = {k: v for k, v in c.items() if k != "finish_reason"}
            if delta.get("content") or c.get("finish_reason") or delta.get("refusal"):
                rest.append({**c, "delta": delta})
        if self.replay == "" and not self.replay_finish:
            self.replay = None
        if not rest and not isinstance(chunk.get("usage"), dict):
            return None
        return {**chunk, "choices": rest}

    def _track(self, chunk: dict[str, Any]) -> None:
        for c in chunk.get("choices") or ():
            idx = c.get("index", 0)
            self.seen.add(idx)
            if c.get("finish_reason"):
                self.finished.add(idx)
                if self.ex.trace is not None:
                    self.ex.state.setdefault("finish_reasons", []).append(c["finish_reason"])
            delta = c.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.received.append(delta["content"])
                if idx == 0:
                    self.text.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self.tool_calls = True
                args = (call.get("function") or {}).get("arguments")
                if isinstance(args, str):
                    self.received.append(args)

    def _encode(self, chunk: dict[str, Any]) -> bytes:
        """A chunk the gateway made (a stream check's release or cut) as the client's events."""
        return encode(orjson.dumps(chunk)) if self.render is None else self.render.feed(chunk)

    async def fail(self, e: UpstreamError) -> None:
        if self.guard is not None:
            for out in await self.guard.flush():
                await _write_quietly(self.resp, self._encode(out))
        self.settle()
        if self.render is not None:
            await _write_quietly(self.resp, self.render.error(e.message, e.kind, self.ex.gateway_info()))
            return
        error = {"message": e.message, "type": "upstream_error", "code": e.kind}
        await _write_quietly(self.resp, encode(orjson.dumps({"error": error, "gateway": self.ex.gateway_info()})))
        await _write_quietly(self.resp, DONE_EVENT)

    async def close(self) -> None:
        if self.guard is not None:
            await self.guard.close()


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
