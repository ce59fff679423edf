"""The mock model behind OpenAI's Responses wire format (`POST /v1/responses` of `gateway mock-server`),
for tests of `openai` upstreams with `api: responses`. It reads requests and renders answers and
event streams with the gateway's own Responses dialect (gateway/dialects/responses*.py), whose
output the tests check with the official `openai` SDK's types; the model behaviour is the mock's.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.dialects import responses as rs
from gateway.dialects.responses_stream import ResponsesStream
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.metering.usage import from_upstream
from gateway.upstreams import mock_model
from gateway.upstreams.mock_model import MockBehaviour
from gateway.upstreams.mock_stream import write_stream


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def respond(request: web.Request, body: dict[str, Any], b: MockBehaviour, attempt: int) -> web.StreamResponse:
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return _error(401, "You didn't provide an API key.")
    if body.get("previous_response_id"):
        return _error(400, "the mock stores no responses", "previous_response_id")
    try:
        chat, _ = rs.to_chat(body, [])
    except GatewayError as e:
        return _error(400, e.message, e.param)
    rid = request.headers.get("x-gateway-request-id", "gw-mock00000000000000000000")
    ex = Exchange("chat.completions", chat)
    ex.id, ex.model, ex.client_body = "gw-" + rid.removeprefix("gw-")[-24:].rjust(24, "0"), body["model"], body
    reply = mock_model.reply_text(b, chat, [])
    call = mock_model.tool_call(b, chat, rid)
    completion = mock_model.completion(chat, body["model"], reply, rid, b.usage, call)
    ex.usage = from_upstream(completion.get("usage"))
    if not body.get("stream"):
        return web.Response(body=orjson.dumps(rs.from_chat(completion, ex)), content_type="application/json")
    render = ResponsesStream(ex, 0)
    chunks = mock_model.stream_chunks(chat, body["model"], reply, rid, b.usage, call)
    return await write_stream(request, b, attempt, (render.feed(c) for c in chunks), {"Content-Type": "text/event-stream"},
                              lambda: render.finish({}).replace(b',"gateway":{}', b""))
