"""The mock model behind Amazon Bedrock's Converse wire format (`POST /model/{id}/converse` and
`/model/{id}/converse-stream` of `gateway mock-server`), for tests of the `bedrock` upstream type.
Written from the AWS API reference: SigV4 signatures verified (for the mock's own access key,
MOCK_ACCESS_KEY_ID / MOCK_SECRET_ACCESS_KEY) or a bearer API key, AWS error bodies with
`x-amzn-ErrorType`, `output.message` with `stopReason` and `usage`, and streams in the binary
event-stream framing (prelude, headers, payload, CRC32s; encoded here, independently of the
gateway, which decodes with botocore).
"""

from __future__ import annotations

import binascii
import re
import struct
from typing import Any

import orjson
from aiohttp import web

from gateway.metering.tokenizer import count_tokens
from gateway.upstreams.mock_model import MockBehaviour
from gateway.upstreams.mock_stream import write_stream

MOCK_ACCESS_KEY_ID = "AKIAMOCKGATEWAY00001"
MOCK_SECRET_ACCESS_KEY = "mock/secret/access/key/for/tests/only"
_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
           408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
           500: "InternalServerException", 503: "ServiceUnavailableException"}
_WORD = re.compile(r"\s*\S+")
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/bedrock/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


def error(status: int, message: str, headers: dict[str, str] | None = None, kind: str | None = None) -> web.Response:
    kind = kind or _ERRORS.get(status, "InternalServerException")
    return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazonaws.bedrock/",
                                 **(headers or {})})


def _signature_problem(request: web.Request, raw: bytes) -> str | None:
    """None when the request carries a valid SigV4 signature by the mock's key (or a bearer key)."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and len(auth) > 7:
        return None
    m = _AUTH.match(auth)
    if m is None:
        return "Missing Authentication Token"
    key_id, _, region, signed, signature = m.groups()
    if key_id != MOCK_ACCESS_KEY_ID:
        return "The security token included in the request is invalid."
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    names = signed.split(";")
    headers = {n: request.headers.get(n, "") for n in names if n != "host"}
    req = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=raw, headers=headers)
    req.context["timestamp"] = request.headers.get("X-Amz-Date", "")
    auth_ = SigV4Auth(Credentials(key_id, MOCK_SECRET_ACCESS_KEY, request.headers.get("X-Amz-Security-Token")),
                      "bedrock", region)
    expected = auth_.signature(auth_.string_to_sign(req, auth_.canonical_request(req)), req)
    if expected != signature:
        return ("The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method.")
    return None


def _text(blocks: list[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for b in blocks)


def answer(b: MockBehaviour, body: dict[str, Any], rid: str) -> tuple[list[dict[str, Any]], str]:
    last = body["messages"][-1]["content"]
    results = [blk["toolResult"] for blk in last if "toolResult" in blk]
    if b.mode == "tool":
        if results:
            return [{"text": f"The tool said: {_text(results[-1].get('content') or [])}"}], "end_turn"
        tools = [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools") or () if "toolSpec" in t]
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        if "tool" in choice:
            tools = [t for t in tools if t.get("name") == choice["tool"].get("name")] or tools
        if tools:
            schema = (tools[0].get("inputSchema") or {}).get("json") or {}
            names = list(schema.get("required") or ()) or list(schema.get("properties") or ())
            return [{"toolUse": {"toolUseId": f"tooluse_mock{rid[-8:]}", "name": tools[0]["name"],
                                 "input": {names[0]: _text(last)} if names else {}}}], "tool_use"
        return [{"text": ""}], "end_turn"
    text = b.text if b.mode == "fixed" else _text(last)
    words = _WORD.findall(text)
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    if b.blocked == "answer":
        return [{"text": "".join(words[:len(words) // 2])}], "guardrail_intervened"
    if isinstance(limit, int) and len(words) > limit:
        return [{"text": "".join(words[:limit])}], "max_tokens"
    return [{"text": text}], "end_turn"


def usage(b: MockBehaviour, body: dict[str, Any], blocks: list[dict[str, Any]]) -> dict[str, int]:
    total = count_tokens(_text(body.get("system") or [])) + sum(
        3 + count_tokens(_text(m["content"])) + sum(count_tokens(orjson.dumps(blk).decode())
                                                   for blk in m["content"] if "text" not in blk)
        for m in body["messages"])
    read = min(b.cache_read_tokens, total)
    written = min(b.cache_write_tokens, total - read)
    out = sum(count_tokens(blk["text"]) if "text" in blk else count_tokens(orjson.dumps(blk["toolUse"]["input"]).decode())
              for blk in blocks)
    use = {"inputTokens": total - read - written, "outputTokens": out, "totalTokens": total + out}
    if read or written:
        use.update(cacheReadInputTokens=read, cacheWriteInputTokens=written)
    return use


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v  # 7: a string value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: total length, headers length, prelude CRC, headers, payload, message CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 12 + len(head) + len(payload) + 4, len(head))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack("!I", binascii.crc32(body))


def event(kind: str, data: dict[str, Any]) -> bytes:
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 orjson.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[:len(kind)]}))  # AWS pads payloads


def stream_events(blocks: list[dict[str, Any]], stop: str, use: dict[str, int]) -> list[bytes]:
    out = [event("messageStart", {"role": "assistant"})]
    for i, blk in enumerate(blocks):
        if "text" in blk:
            out += [event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": w}})
                    for w in _WORD.findall(blk["text"])]
        else:
            use_ = blk["toolUse"]
            out.append(event("contentBlockStart", {"contentBlockIndex": i, "start": {"toolUse": {
                "toolUseId": use_["toolUseId"], "name": use_["name"]}}}))
            args = orjson.dumps(use_["input"]).decode()
            out += [event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": args[k:k + 8]}}})
                    for k in range(0, len(args), 8)]
        out.append(event("contentBlockStop", {"contentBlockIndex": i}))
    out.append(event("messageStop", {"stopReason": stop}))
    out.append(event("metadata", {"usage": use, "metrics": {"latencyMs": 12}}))
    return out


async def converse(request: web.Request, raw: bytes, b: MockBehaviour, attempt: int, stream: bool) -> web.StreamResponse:
    if (problem := _signature_problem(request, raw)) is not None:
        kind = "UnrecognizedClientException" if "token" in problem else (
            "InvalidSignatureException" if "signature" in problem else "MissingAuthenticationTokenException")
        return error(403, problem, kind=kind)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error(400, "The request body is not valid JSON.")
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages or any(not m.get("content") for m in messages):
        return error(400, "A conversation must start with a user message and every message needs content.")
    for i in range(1, len(messages)):
        if messages[i].get("role") == messages[i - 1].get("role"):
            return error(400, "A conversation must alternate between user and assistant roles.")
    rid = request.headers.get("x-gateway-request-id", "mock-request-0000")
    blocks, stop = answer(b, body, rid)
    use = usage(b, body, blocks)
    if not stream:
        return web.json_response({"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
                                  "usage": use, "metrics": {"latencyMs": 12}})
    return await write_stream(request, b, attempt, stream_events(blocks, stop, use),
                              {"Content-Type": "application/vnd.amazon.eventstream"})
