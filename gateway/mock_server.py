"""`gateway mock-server`: the mock model behind a real HTTP server, in each provider's wire format:
OpenAI (`/v1/chat/completions`, `/v1/embeddings`, `/v1/responses`), Azure OpenAI (`/openai/deployments/{d}/chat/completions`,
`/openai/v1/chat/completions`), Anthropic (`/v1/messages`, upstreams/mock_anthropic.py) and Gemini
(`/v1beta/models/{model}:generateContent` and `:streamGenerateContent`, upstreams/mock_gemini.py) and
Amazon Bedrock (`/model/{id}/converse` and `/converse-stream`, upstreams/mock_bedrock.py).

Used by `gateway bench` as the upstream, by tests of the upstream types, and for demos. The
behaviour comes from the model name, e.g. `echo`, `fixed?text=hi`, `echo?fail_status=429&fail_times=1`
(attempts are counted per `x-gateway-request-id`), `echo?cut_after=3`, `echo?garbage=true`.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from gateway.upstreams import mock_anthropic, mock_bedrock, mock_gemini, mock_model, mock_responses
from gateway.upstreams.mock_model import MockBehaviour
from gateway.upstreams.mock_stream import write_stream

_ATTEMPTS: web.AppKey[collections.OrderedDict] = web.AppKey("attempts")
# Streams being written right now and requests seen: lets tests check that a client's disconnect
# really cancelled the upstream stream, and benchmarks check their request counts.
STATS: web.AppKey[dict[str, int]] = web.AppKey("stats")
_ATTEMPT: web.RequestKey[int] = web.RequestKey("attempt")  # this request's attempt number (per request id)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "mock_error", "param": None, "code": None}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


async def _prepare(request: web.Request) -> tuple[dict[str, Any], MockBehaviour | web.Response]:
    """The request body, and the behaviour to apply - or the failure response to send instead."""
    body = orjson.loads(await request.read())
    return body, await _behaviour(request, body)


async def _behaviour(request: web.Request, body: dict[str, Any], error=_error) -> MockBehaviour | web.Response:
    """`error`: renders a failure in the wire format of the API being mocked."""
    request.app[STATS]["requests"] += 1
    try:
        b = mock_model.behaviour_for(MockBehaviour(), str(body.get("model", "echo")))
    except ValidationError as e:
        return error(400, f"bad mock model options: {e.errors()[0]['msg']}")
    attempts: collections.OrderedDict = request.app[_ATTEMPTS]
    key = (request.headers.get("x-gateway-request-id") or "", str(body.get("model")))
    attempts[key] = n = attempts.get(key, 0) + 1
    if len(attempts) > 10_000:
        attempts.popitem(last=False)
    if b.latency_ms:
        await asyncio.sleep(b.latency_ms / 1000)
    if b.hang:
        await asyncio.sleep(3600)
    if b.fail_status and (b.fail_times is None or n <= b.fail_times):
        headers = {"Retry-After": f"{b.retry_after:g}"} if b.retry_after is not None else None
        # Like OpenAI's 401 ("Incorrect API key provided: sk-..."), the mock can quote the key it got.
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return error(b.fail_status, b.fail_message.replace("{api_key}", token), headers)
    if b.garbage:
        return web.Response(status=200, text="<html>upstream proxy error</html>", content_type="application/json")
    request[_ATTEMPT] = n
    return b


async def chat(request: web.Request) -> web.StreamResponse:
    body, b = await _prepare(request)
    if isinstance(b, web.Response):
        return b
    return await _chat(request, body, b)


async def azure_chat(request: web.Request) -> web.StreamResponse:
    """Azure OpenAI's deployment route: the deployment names the model (the body has none), an
    api-version is required, and the key comes as `api-key` (or an Entra ID bearer token)."""
    if not request.query.get("api-version"):
        return _azure_error(404, "404", "Resource not found")
    if not request.headers.get("api-key") and not request.headers.get("Authorization", "").startswith("Bearer "):
        return _azure_error(401, "401", "Access denied due to missing subscription key. Make sure to include "
                                        "subscription key when making requests to an API.")
    body = orjson.loads(await request.read())
    if "model" in body:  # Azure ignores it; the mock refuses it to prove the gateway sends none
        return _azure_error(400, "invalid_request", "the mock's deployment route takes no `model`")
    body["model"] = request.match_info["deployment"]
    b = await _behaviour(request, body)
    if isinstance(b, web.Response):
        return b
    return await _chat(request, body, b)


def _azure_error(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": {"code": code, "message": message}}),
                        content_type="application/json")


async def _chat(request: web.Request, body: dict[str, Any], b: MockBehaviour) -> web.StreamResponse:
    rid = request.headers.get("x-gateway-request-id", "mock-request-0000")
    reply = mock_model.reply_text(b, body, [])
    attempt = request[_ATTEMPT]
    if b.vary:
        reply = f"Attempt {attempt}: {reply}"
    call = mock_model.tool_call(b, body, rid)
    if not body.get("stream"):
        return web.Response(body=orjson.dumps(mock_model.completion(body, body["model"], reply, rid, b.usage, call)),
                            content_type="application/json")
    stats = request.app[STATS]
    stats["active_streams"] += 1
    try:
        chunks = mock_model.stream_chunks(body, body["model"], reply, rid, b.usage, call)
        return await write_stream(request, b, attempt, (b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks),
                                  {"Content-Type": "text/event-stream"}, lambda: b"data: [DONE]\n\n")
    finally:
        stats["active_streams"] -= 1


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return mock_anthropic.error(400, "The request body is not valid JSON.")
    b = await _behaviour(request, body if isinstance(body, dict) else {}, mock_anthropic.error)
    if isinstance(b, web.Response):
        return b
    return await mock_anthropic.messages(request, body, b, request[_ATTEMPT])


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    """`/{version}/models/{model}:generateContent` and `:streamGenerateContent` (alt=sse)."""
    model, _, method = request.match_info["call"].partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        return mock_gemini.error(404, f"Method {method!r} is not found for model {model!r}.")
    stream = method == "streamGenerateContent"
    if stream and request.query.get("alt") != "sse":
        return mock_gemini.error(400, "the mock streams server-sent events only (alt=sse)")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return mock_gemini.error(400, "Invalid JSON payload received.")
    b = await _behaviour(request, {"model": model}, mock_gemini.error)
    if isinstance(b, web.Response):
        return b
    return await mock_gemini.generate(request, body, b, request[_ATTEMPT], model, stream)


async def bedrock_converse(request: web.Request) -> web.StreamResponse:
    """`/model/{model}/converse` and `/model/{model}/converse-stream`."""
    raw = await request.read()
    b = await _behaviour(request, {"model": request.match_info["model"]}, mock_bedrock.error)
    if isinstance(b, web.Response):
        return b
    stream = request.path.endswith("/converse-stream")
    return await mock_bedrock.converse(request, raw, b, request[_ATTEMPT], stream)


async def openai_responses(request: web.Request) -> web.StreamResponse:
    body, b = await _prepare(request)
    if isinstance(b, web.Response):
        return b
    return await mock_responses.respond(request, body, b, request[_ATTEMPT])


async def embeddings(request: web.Request) -> web.Response:
    body, b = await _prepare(request)
    if isinstance(b, web.Response):
        return b
    return web.Response(body=orjson.dumps(mock_model.embeddings(body, body["model"])), content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


async def models(request: web.Request) -> web.Response:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in ("echo", "context", "fixed")]
    return web.json_response({"object": "list", "data": data})


def build_mock_app() -> web.Application:
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[_ATTEMPTS] = collections.OrderedDict()
    app[STATS] = {"requests": 0, "active_streams": 0}
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/messages", anthropic_messages)  # Anthropic's wire format
    app.router.add_post("/v1/responses", openai_responses)  # OpenAI's Responses API
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", azure_chat)  # Azure OpenAI's
    app.router.add_post("/openai/v1/chat/completions", chat)
    app.router.add_post("/{version}/models/{call}", gemini_generate)  # the Gemini API's
    app.router.add_post("/model/{model}/converse", bedrock_converse)  # Amazon Bedrock's
    app.router.add_post("/model/{model}/converse-stream", bedrock_converse)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/mock/stats", stats)
    return app
