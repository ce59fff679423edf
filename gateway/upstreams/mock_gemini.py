"""The mock model behind the Gemini API's wire format (`POST /v1beta/models/{model}:generateContent`
and `:streamGenerateContent?alt=sse` of `gateway mock-server`), for tests of the `gemini` upstream
type. Written from Google's API reference, independently of the gateway's translation: the key
header checked, Google-style error bodies, `candidates` with `finishReason`, `usageMetadata`, safety
blocks (`promptFeedback.blockReason`, `finishReason: SAFETY`), and a stream whose last chunk carries
the finish reason and usage. The behaviour comes from the model name, as for the other mocks.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from gateway.metering.tokenizer import count_tokens
from gateway.upstreams.mock_model import MockBehaviour
from gateway.upstreams.mock_stream import write_stream

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_WORD = re.compile(r"\s*\S+")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def problem(request: web.Request, body: Any) -> web.Response | None:
    if not request.headers.get("x-goog-api-key") and not request.query.get("key"):
        return error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                          "Please use API Key or other form of API consumer identity to call this API.")
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
        return error(400, "* GenerateContentRequest.contents: contents is not specified")
    for i, c in enumerate(body["contents"]):
        if c.get("role") not in ("user", "model") or not c.get("parts"):
            return error(400, f"* GenerateContentRequest.contents[{i}]: a role (user or model) and parts are required")
    return None


def _field(obj: dict[str, Any], camel: str) -> Any:
    """A field by its JSON name or its proto name: Google's JSON parsing accepts both (the
    google-genai SDK sends some nested fields snake_cased)."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), camel))


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for p in parts)


def answer(b: MockBehaviour, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    parts = body["contents"][-1]["parts"]
    responses = [_field(p, "functionResponse") for p in parts if _field(p, "functionResponse")]
    if b.mode == "tool":
        if responses:
            return [{"text": f"The tool said: {(responses[-1].get('response') or {}).get('content', '')}"}], "STOP"
        decls = [d for t in body.get("tools") or () for d in _field(t, "functionDeclarations") or ()]
        mode = _field(_field(body, "toolConfig") or {}, "functionCallingConfig") or {}
        allowed = _field(mode, "allowedFunctionNames")
        if allowed:
            decls = [d for d in decls if d.get("name") in allowed] or decls
        if decls and mode.get("mode") != "NONE":
            schema = _field(decls[0], "parametersJsonSchema") or decls[0].get("parameters") or {}
            names = list(schema.get("required") or ()) or list(schema.get("properties") or ())
            return [{"functionCall": {"name": decls[0]["name"], "args": {names[0]: _text(parts)} if names else {}}}], \
                "STOP"
        return [{"text": ""}], "STOP"
    text = b.text if b.mode == "fixed" else _text(parts)
    words = _WORD.findall(text)
    limit = _field(_field(body, "generationConfig") or {}, "maxOutputTokens")
    if b.blocked == "answer":
        return [{"text": "".join(words[:len(words) // 2])}], "SAFETY"
    if isinstance(limit, int) and len(words) > limit:
        return [{"text": "".join(words[:limit])}], "MAX_TOKENS"
    return [{"text": text}], "STOP"


def usage(b: MockBehaviour, body: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, int]:
    system = (_field(body, "systemInstruction") or {}).get("parts") or []
    prompt = count_tokens(_text(system)) + sum(
        3 + count_tokens(_text(c["parts"])) + sum(count_tokens(orjson.dumps(p).decode()) for p in c["parts"]
                                                  if "text" not in p) for c in body["contents"])
    out = sum(count_tokens(p["text"]) if "text" in p else count_tokens(orjson.dumps(p).decode()) for p in parts)
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}
    if b.cache_read_tokens:
        meta["cachedContentTokenCount"] = min(b.cache_read_tokens, prompt)
    return meta


async def generate(request: web.Request, body: dict[str, Any], b: MockBehaviour, attempt: int,
                   model: str, stream: bool) -> web.StreamResponse:
    if (bad := problem(request, body)) is not None:
        return bad
    rid = request.headers.get("x-gateway-request-id", "mock-request-0000")
    if b.blocked == "prompt":
        blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
            "usageMetadata": usage(b, body, []), "modelVersion": model, "responseId": f"mock-{rid[-12:]}"}
        chunks = [blocked]
    else:
        parts, reason = answer(b, body)
        meta = usage(b, body, parts)
        base = {"modelVersion": model, "responseId": f"mock-{rid[-12:]}"}
        final = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": reason, "index": 0}],
                 "usageMetadata": meta, **base}
        if not stream:
            return web.Response(body=orjson.dumps(final), content_type="application/json")
        chunks = []
        if "text" in parts[0]:
            words = _WORD.findall(parts[0]["text"]) or [""]
            chunks = [{"candidates": [{"content": {"role": "model", "parts": [{"text": w}]}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": meta["promptTokenCount"]}, **base} for w in words[:-1]]
            last = {"role": "model", "parts": [{"text": words[-1]}]}
        else:
            last = {"role": "model", "parts": parts}  # a function call streams whole
        chunks.append({"candidates": [{"content": last, "finishReason": reason, "index": 0}],
                       "usageMetadata": meta, **base})
    if not stream:
        return web.Response(body=orjson.dumps(chunks[0]), content_type="application/json")
    events = (b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)  # Google's servers end lines with CRLF
    return await write_stream(request, b, attempt, events, {"Content-Type": "text/event-stream"})
