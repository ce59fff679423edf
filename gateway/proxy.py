"""One request, one path: parse -> request checks -> upstream -> response/stream checks -> reply."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.checks.base import Action, OutputSegment
from gateway.errors import GatewayError, InvalidRequest
from gateway.exchange import Exchange
from gateway.keys import EXCHANGE, HOLDER, METER
from gateway.pipeline import Pipeline
from gateway.routing import Route
from gateway.runtime import Runtime
from gateway.sse import DONE_EVENT, encode
from gateway.stream_guard import StreamGuard
from gateway.upstreams.base import Upstream, UpstreamError, parse_object
from gateway.upstreams.mock_model import validate_overrides
from gateway.validation import parse_json, pop_gateway_options, validate_chat, validate_embeddings

log = logging.getLogger("gateway.proxy")


def _too_big(limit: int) -> GatewayError:
    return GatewayError(
        f"Request body is larger than the gateway's limit of {limit} bytes (server.max_body_mb).",
        status=413, type="invalid_request_error", code="request_too_large",
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None:
        if request.content_length > limit:
            raise _too_big(limit)
        return await request.read()
    buf = bytearray()  # chunked upload: count as it arrives
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise _too_big(limit)
    return bytes(buf)


async def _begin(request: web.Request, endpoint: str) -> tuple[Runtime, Exchange, Route, Pipeline]:
    """Authenticate, parse, validate, route, admit (limits) and run the request checks."""
    rt: Runtime = request.app[HOLDER].current
    ex = Exchange(endpoint, {})  # type: ignore[arg-type]
    ex.metered = rt.metering
    request[EXCHANGE] = ex  # from here on the request is recorded, whatever happens
    principal = rt.keys.authenticate(request.headers.get("Authorization"))
    ex.key_name, ex.group, ex.policy = principal.name, principal.group, principal.policy
    body = ex.body = parse_json(await read_body(request, int(rt.settings.max_body_mb * 1024 * 1024)))
    options = ex.options = pop_gateway_options(body)
    if options.prompt is not None:
        apply_prompt(ex, rt)
    (validate_chat if endpoint == "chat.completions" else validate_embeddings)(body)
    if options.mock and (problem := validate_overrides(options.mock)):
        raise InvalidRequest(problem, param="gateway.mock")
    ex.model = body["model"]
    principal.check_model(ex.model)
    route = rt.router.get(ex.model)
    ex.stream = bool(body.get("stream"))
    if rt.metering and principal.scopes:
        await request.app[METER].admit(ex, rt, principal)
    pipeline = rt.pipelines[principal.policy]
    await pipeline.run_request(ex)
    return rt, ex, route, pipeline


def apply_prompt(ex: Exchange, rt: Runtime) -> None:
    """Render `gateway.prompt` into the request. The rule: the prompt's messages come first, then the
    client's own `messages` (a conversation so far); the prompt's model applies when the request's
    `model` is absent, empty or "prompt"; its params apply where the request sets none."""
    if ex.endpoint != "chat.completions":
        raise InvalidRequest("`gateway.prompt` applies to chat completions only.", param="gateway.prompt")
    req = ex.options.prompt
    rendered = rt.prompts.render((req.name, req.version, req.label), req.variables)
    client = ex.body.get("messages")
    if client is not None and not isinstance(client, list):
        raise InvalidRequest("`messages` must be an array of message objects.", param="messages")
    ex.body["messages"] = [*rendered.messages, *(client or [])]
    if ex.body.get("model") in (None, "", "prompt"):
        if rendered.model is None:
            raise InvalidRequest(f"Prompt {rendered.name}@{rendered.version} has no default model; name one in "
                                 "`model`.", param="model")
        ex.body["model"] = rendered.model
    for key, value in rendered.params.items():
        ex.body.setdefault(key, value)
    ex.prompt = rendered


def gateway_headers(ex: Exchange) -> dict[str, str]:
    headers = {"x-gateway-request-id": ex.id, "x-gateway-overhead-ms": f"{ex.overhead_ms():.3f}"}
    if ex.usage is not None:
        headers["x-gateway-cost-usd"] = "unknown" if ex.cost_usd is None else f"{ex.cost_usd:.8f}"
    return headers


def json_response(data: dict[str, Any], ex: Exchange) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", headers=gateway_headers(ex))


def completion_text(data: dict[str, Any]) -> str:
    """All generated text of a completion (contents and tool-call arguments), for token estimates."""
    parts = []
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "".join(parts)


# ---- /v1/chat/completions ----------------------------------------------------------------------
async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt, ex, route, pipeline = await _begin(request, "chat.completions")
    if ex.stream:
        return await relay_stream(request, rt, ex, route, pipeline)

    async def call(upstream: Upstream, model: str) -> dict[str, Any]:
        return await upstream.chat(ex, model, ex.body)

    data = await rt.router.call(ex, route, call)
    if ex.metered:  # before the checks: withheld output was still generated, and billed
        request.app[METER].settle(ex, rt, data.get("usage"), completion_text(data), data.get("model"))
    if pipeline.response_checks:
        await check_completion(ex, pipeline, data)
    data["gateway"] = ex.gateway_info()
    return json_response(data, ex)


async def check_completion(ex: Exchange, pipeline: Pipeline, data: dict[str, Any]) -> None:
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        content = message.get("content")
        if not isinstance(content, str) or not content:
            continue
        seg = OutputSegment(choice.get("index", 0), content)
        decision = await pipeline.check_segment(ex, seg, pipeline.response_checks)
        if decision.action is Action.BLOCK:
            message["content"] = ""
            choice["finish_reason"] = "content_filter"
        elif decision.action is Action.REDACT:
            message["content"] = decision.text


async def relay_stream(
    request: web.Request, rt: Runtime, ex: Exchange, route: Route, pipeline: Pipeline
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

    stream, first = await rt.router.call(ex, route, open_and_peek)
    guard = StreamGuard(ex, pipeline) if pipeline.response_checks else None
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **gateway_headers(ex),
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
                    raise UpstreamError("upstream_error", str(chunk["error"].get("message", "upstream stream error")))
                _track_choices(chunk, seen, finished, received)
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


def _final_chunk(template: dict[str, Any], ex: Exchange) -> dict[str, Any]:
    """The chunk before [DONE] carrying the gateway's verdicts; `choices` is empty like a usage chunk."""
    return {**template, "object": "chat.completion.chunk", "choices": [], "gateway": ex.gateway_info()}


async def _write_quietly(resp: web.StreamResponse, data: bytes) -> None:
    try:
        await resp.write(data)
    except ConnectionError:
        pass


# ---- /v1/embeddings ----------------------------------------------------------------------------
async def embeddings(request: web.Request) -> web.Response:
    rt, ex, route, _pipeline = await _begin(request, "embeddings")

    async def call(upstream: Upstream, model: str) -> dict[str, Any]:
        return await upstream.embeddings(ex, model, ex.body)

    data = await rt.router.call(ex, route, call)
    if ex.metered:
        request.app[METER].settle(ex, rt, data.get("usage"), None, data.get("model"))
    data["gateway"] = ex.gateway_info()
    return json_response(data, ex)


# ---- /v1/models ---------------------------------------------------------------------------------
async def list_models(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    principal = rt.keys.authenticate(request.headers.get("Authorization"))
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "gateway"} for m in rt.models_for(principal)]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


# ---- /v1/prompts --------------------------------------------------------------------------------
async def list_prompts(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    return web.Response(body=orjson.dumps({"object": "list", "data": rt.prompts.describe()}),
                        content_type="application/json")


async def show_prompt(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    return web.Response(body=orjson.dumps(rt.prompts.describe(request.match_info["name"])),
                        content_type="application/json")
