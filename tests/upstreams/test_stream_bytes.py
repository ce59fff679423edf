"""Every upstream wire format's stream, recorded from the mock server, fed to the gateway's decoder
and translator split at every byte boundary (one byte per read, and two reads at each offset): the
chat completion the chunks add up to never changes."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from gateway.cache.replay import StreamAssembler
from gateway.upstreams import anthropic_wire, bedrock_wire, gemini_wire, responses_wire
from gateway.upstreams.bedrock import EventStreamReader
from gateway.upstreams.http import TranslatedStream, _HttpStream
from gateway.upstreams.mock_bedrock import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY
from tests.helpers import running_mock_server

TOOLS_OPENAI = [{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _record(mock, wire: str, mode: str) -> bytes:
    text = "Größe matters, naïve café: ok"  # multi-byte UTF-8, split mid-character too
    if wire == "openai":
        body = {"model": mode, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": text}], "tools": TOOLS_OPENAI}
        r = httpx.post(mock.url + "/v1/chat/completions", json=body)
    elif wire == "responses":
        body = {"model": mode, "stream": True, "store": False, "input": text, "tools": [
            {"type": "function", "name": "f", "parameters": TOOLS_OPENAI[0]["function"]["parameters"]}]}
        r = httpx.post(mock.url + "/v1/responses", json=body, headers={"Authorization": "Bearer k"})
    elif wire == "anthropic":
        body = {"model": mode, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": text}],
                "tools": [{"name": "f", "input_schema": TOOLS_OPENAI[0]["function"]["parameters"]}]}
        r = httpx.post(mock.url + "/v1/messages", json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    elif wire == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}], "tools": [{"functionDeclarations": [
            {"name": "f", "parametersJsonSchema": TOOLS_OPENAI[0]["function"]["parameters"]}]}]}
        r = httpx.post(f"{mock.url}/v1beta/models/{mode}:streamGenerateContent?alt=sse", json=body,
                       headers={"x-goog-api-key": "k"})
    else:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = {"messages": [{"role": "user", "content": [{"text": text}]}], "toolConfig": {"tools": [{"toolSpec": {
            "name": "f", "inputSchema": {"json": TOOLS_OPENAI[0]["function"]["parameters"]}}}]}}
        url = f"{mock.url}/model/{mode}/converse-stream"
        req = AWSRequest(method="POST", url=url, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY), "bedrock", "us-east-1").add_auth(req)
        r = httpx.post(url, content=req.body, headers=dict(req.headers))
    assert r.status_code == 200, r.text
    return r.content


@pytest.fixture(scope="module")
def recorded():
    with running_mock_server() as mock:
        return {(w, m): _record(mock, w, m) for w in ("openai", "responses", "anthropic", "gemini", "bedrock")
                for m in ("echo", "tool")}


class _Content:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def readany(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


class _Resp:
    def __init__(self, pieces: list[bytes]) -> None:
        self.content = _Content(pieces)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def _stream(wire: str, pieces: list[bytes]):
    resp, slots = _Resp(pieces), asyncio.Semaphore(1)
    if wire == "openai":
        return _HttpStream(resp, slots, str)
    if wire == "responses":
        return TranslatedStream(_HttpStream(resp, slots, str), responses_wire.StreamTranslator("gw-1", "m"))
    if wire == "anthropic":
        return TranslatedStream(_HttpStream(resp, slots, str), anthropic_wire.StreamTranslator())
    if wire == "gemini":
        return TranslatedStream(_HttpStream(resp, slots, str), gemini_wire.StreamTranslator("gw-1", "m"))
    return TranslatedStream(EventStreamReader(resp, slots, str), bedrock_wire.StreamTranslator("gw-1", "m"))


def _completion(wire: str, pieces: list[bytes]) -> dict:
    async def run():
        stream = _stream(wire, pieces)
        assembler = StreamAssembler()
        async for payload in stream:
            assembler.add(orjson.loads(payload))
        assert stream.saw_done
        return assembler.completion()
    done = asyncio.run(run())
    done.pop("id", None)
    done.pop("created", None)
    return done


@pytest.mark.parametrize("mode", ["echo", "tool"])
@pytest.mark.parametrize("wire", ["openai", "responses", "anthropic", "gemini", "bedrock"])
def test_streams_split_at_every_byte_boundary_translate_the_same(recorded, wire, mode):
    raw = recorded[(wire, mode)]
    want = _completion(wire, [raw])
    message = want["choices"][0]["message"]
    assert message.get("content") or message.get("tool_calls")
    assert want.get("usage", {}).get("completion_tokens", 0) > 0
    assert _completion(wire, [raw[i:i + 1] for i in range(len(raw))]) == want
    for k in range(1, len(raw)):
        assert _completion(wire, [raw[:k], raw[k:]]) == want, k


def test_the_responses_mock_parses_with_the_openai_sdk():
    import openai

    with running_mock_server() as mock:
        c = openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0)
        r = c.responses.create(model="echo", input="hello there", store=False)
        assert r.output_text == "hello there" and r.usage.output_tokens == 2
        with c.responses.stream(model="tool", input="Oslo", tools=[{"type": "function", "name": "f", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}]) as s:
            final = s.get_final_response()
        assert final.output[0].type == "function_call" and final.output[0].arguments == '{"city":"Oslo"}'
