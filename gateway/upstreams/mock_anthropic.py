"""The mock model behind Anthropic's Messages wire format (`POST /v1/messages` of `gateway mock-server`),
for tests of the `anthropic` upstream type. Written from Anthropic's API reference, independently of
the gateway's own translations (which it exists to test): headers checked, Anthropic error bodies,
`message` objects with usage including prompt-cache fields, and the streaming event sequence
(message_start, content_block_start, ping, content_block_delta, content_block_stop, message_delta,
message_stop). The behaviour comes from the model name, as for the OpenAI-shaped mock.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from gateway.metering.tokenizer import count_tokens
from gateway.upstreams.mock_model import MockBehaviour
from gateway.upstreams.mock_stream import write_stream

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}
_WORD = re.compile(r"\s*\S+")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def problem(request: web.Request, body: Any) -> web.Response | None:
    """What the real API refuses before generating anything."""
    # the API takes its key as x-api-key; recent SDKs send it as a bearer token, which it also accepts
    if not request.headers.get("x-api-key") and not request.headers.get("Authorization", "").startswith("Bearer "):
        return error(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return error(400, "messages: Field required")
    if not isinstance(body.get("max_tokens"), int):
        return error(400, "max_tokens: Field required")
    for i, msg in enumerate(body["messages"]):
        if msg.get("role") not in ("user", "assistant"):
            return error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i and msg["role"] == body["messages"][i - 1]["role"]:
            return error(400, "messages: roles must alternate between \"user\" and \"assistant\"")
    return None


def _blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    content = msg.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or ())


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for b in blocks if b.get("type") == "text")


def prompt_tokens(body: dict[str, Any]) -> int:
    system = body.get("system") or ""
    n = count_tokens(system if isinstance(system, str) else _text_of(system))
    for msg in body["messages"]:
        n += 4
        for b in _blocks(msg):
            if b.get("type") == "text":
                n += count_tokens(b.get("text", ""))
            elif b.get("type") in ("tool_use", "tool_result"):
                n += count_tokens(orjson.dumps(b.get("input") or b.get("content") or "").decode())
    for tool in body.get("tools") or ():
        n += count_tokens(orjson.dumps(tool).decode())
    return n


def answer(b: MockBehaviour, body: dict[str, Any], message_id: str) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and stop reason the mock model gives."""
    last = _blocks(body["messages"][-1])
    results = [blk for blk in last if blk.get("type") == "tool_result"]
    if b.mode == "tool":
        if results:
            content = results[-1].get("content")
            text = content if isinstance(content, str) else _text_of(content or [])
            return [{"type": "text", "text": f"The tool said: {text}"}], "end_turn"
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            tools = [t for t in tools if t.get("name") == choice.get("name")] or tools
        if tools and choice.get("type") != "none":
            schema = tools[0].get("input_schema") or {}
            names = list(schema.get("required") or ()) or list(schema.get("properties") or ())
            return [{"type": "tool_use", "id": f"toolu_mock_{message_id[-8:]}", "name": tools[0]["name"],
                     "input": {names[0]: _text_of(last)} if names else {}}], "tool_use"
        return [{"type": "text", "text": ""}], "end_turn"
    text = b.text if b.mode == "fixed" else _text_of(last)
    words = _WORD.findall(text)
    if len(words) > body["max_tokens"]:  # one token per word, near enough for a mock
        return [{"type": "text", "text": "".join(words[:body["max_tokens"]])}], "max_tokens"
    return [{"type": "text", "text": text}], "end_turn"


def usage(b: MockBehaviour, body: dict[str, Any], blocks: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    total = prompt_tokens(body)
    read = min(b.cache_read_tokens, total)
    written = min(b.cache_write_tokens, total - read)
    out = sum(count_tokens(blk["text"]) if blk["type"] == "text" else count_tokens(orjson.dumps(blk["input"]).decode())
              for blk in blocks)
    return {"input_tokens": total - read - written, "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read, "output_tokens": out}, out


async def messages(request: web.Request, body: dict[str, Any], b: MockBehaviour, attempt: int) -> web.StreamResponse:
    if (bad := problem(request, body)) is not None:
        return bad
    rid = request.headers.get("x-gateway-request-id", "mock-request-0000")
    message_id = f"msg_mock_{rid[-12:]}"
    blocks, stop = answer(b, body, message_id)
    use, _ = usage(b, body, blocks)
    msg = {"id": message_id, "type": "message", "role": "assistant", "model": body["model"], "content": blocks,
           "stop_reason": stop, "stop_sequence": None, "usage": use}
    if not body.get("stream"):
        return web.Response(body=orjson.dumps(msg), content_type="application/json")
    events = (b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n" for name, data in stream_events(msg))
    return await write_stream(request, b, attempt, events,
                              {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})


def stream_events(msg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The event sequence of a streamed `msg`: text one word per delta, tool input 8 characters per delta."""
    start = {**msg, "content": [], "stop_reason": None, "usage": {**msg["usage"], "output_tokens": 1}}
    out = [("message_start", {"type": "message_start", "message": start}), ("ping", {"type": "ping"})]
    for i, blk in enumerate(msg["content"]):
        if blk["type"] == "text":
            out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                "content_block": {"type": "text", "text": ""}}))
            out += [("content_block_delta", {"type": "content_block_delta", "index": i,
                                             "delta": {"type": "text_delta", "text": w}})
                    for w in _WORD.findall(blk["text"])]
        else:
            out.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": blk["id"], "name": blk["name"], "input": {}}}))
            args = orjson.dumps(blk["input"]).decode()
            out += [("content_block_delta", {"type": "content_block_delta", "index": i,
                                             "delta": {"type": "input_json_delta", "partial_json": args[k:k + 8]}})
                    for k in range(0, len(args), 8)]
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"],
                                                                     "stop_sequence": None},
                                  "usage": {"output_tokens": msg["usage"]["output_tokens"]}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out
