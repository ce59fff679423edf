"""`POST /v1/messages` end to end with the official `anthropic` SDK against the mock model, plus the
stream renderer fed arbitrarily re-chunked upstream streams."""

from __future__ import annotations

import json
import random

import anthropic
import httpx
import pytest

from gateway.auth import hash_key
from gateway.dialects import anthropic_messages as am
from gateway.dialects.anthropic_stream import AnthropicStream
from gateway.exchange import Exchange
from gateway.metering.usage import Usage
from tests.helpers import ledger_row, running_gateway, write_policies

GATEWAY = f"""
upstreams: {{mock: {{type: mock}}}}
models:
  echo: {{targets: [{{upstream: mock, model: echo}}]}}
  tool: {{targets: [{{upstream: mock, model: tool}}]}}
  cut: {{targets: [{{upstream: mock, model: "echo?cut_after=3"}}], retries: 0}}
  limited: {{targets: [{{upstream: mock, model: "echo?fail_status=429&retry_after=7"}}], retries: 0}}
keys:
  - name: app
    sha256: "{hash_key('app-secret')}"
    policy: strict
server: {{watch_interval_s: 0}}
"""
STRICT = """
request:
  - {type: denylist, name: off-limits, action: block, words: [nightingale]}
response:
  - {type: denylist, name: no-leaks, action: block, words: [classified], stream: hold}
"""
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = write_policies(tmp_path_factory.mktemp("p"), GATEWAY, strict=STRICT)
    with running_gateway(root, ledger=root / "ledger.db") as server:
        server.ledger = root / "ledger.db"
        yield server


@pytest.fixture(scope="module")
def client(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key="app-secret", max_retries=0, timeout=30)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_text_answer_with_usage_stop_reason_and_ledger_row(gw, client):
    m = client.messages.create(model="echo", max_tokens=64, system=[{"type": "text", "text": "Be brief."}],
                               messages=user("Hello there friend"))
    assert m.type == "message" and m.role == "assistant" and m.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in m.content] == [("text", "Hello there friend")]
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 3
    info = m.model_extra["gateway"]
    assert info["policy"] == "strict" and m.id == "msg_" + info["request_id"].removeprefix("gw-")
    row = ledger_row(gw.ledger, info["request_id"])
    assert row["endpoint"] == "messages" and row["key"] == "app" and row["output_tokens"] == 3


def test_x_api_key_header_authenticates_and_a_wrong_key_is_authentication_error(gw):
    body = {"model": "echo", "max_tokens": 8, "messages": user("hi")}
    r = httpx.post(gw.url + "/v1/messages", json=body, headers={"x-api-key": "app-secret"})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "hi"
    r = httpx.post(gw.url + "/v1/messages", json=body, headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0).messages.create(**body)


def test_streamed_text_matches_the_non_streamed_answer(client):
    with client.messages.stream(model="echo", max_tokens=64, messages=user("one two three four")) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(pieces) == "one two three four"  # released by sentence: the policy holds for its check
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4 and final.usage.input_tokens > 0


def test_raw_stream_event_sequence(gw):
    body = {"model": "echo", "max_tokens": 64, "stream": True, "messages": user("a b")}
    with httpx.stream("POST", gw.url + "/v1/messages", json=body, headers={"x-api-key": "app-secret"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        names = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "content_block_start"] and "content_block_delta" in names
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_tool_use_round_trip_non_streamed_and_streamed(client):
    first = client.messages.create(model="tool", max_tokens=64, tools=TOOLS, messages=user("Paris"))
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Paris"}
    with client.messages.stream(model="tool", max_tokens=64, tools=TOOLS, messages=user("Paris")) as s:
        streamed = s.get_final_message()
    assert [(b.type, b.name, b.input) for b in streamed.content] == [("tool_use", "get_weather", {"city": "Paris"})]
    assert streamed.stop_reason == "tool_use"
    history = [*user("Paris"), {"role": "assistant", "content": [b.model_dump(include={"type", "id", "name", "input"})
                                                                  for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    second = client.messages.create(model="tool", max_tokens=64, tools=TOOLS, messages=history)
    assert second.content[0].text == "The tool said: sunny" and second.stop_reason == "end_turn"


def test_tool_choice_and_results_translate_to_chat():
    chat = am.to_chat({"model": "m", "max_tokens": 5, "tools": TOOLS,
                       "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
                       "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
                       "messages": [{"role": "user", "content": "x"},
                                    {"role": "assistant", "content": [
                                        {"type": "text", "text": "Let me look."},
                                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}}]},
                                    {"role": "user", "content": [
                                        {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                         "content": [{"type": "text", "text": "timeout"}]},
                                        {"type": "text", "text": "try again"}]}]})
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False and chat["stop"] == ["END"] and chat["user"] == "u1"
    assert chat["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assistant, tool, rest = chat["messages"][1:]
    assert assistant["content"] == "Let me look."
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    assert tool == {"role": "tool", "tool_call_id": "t1", "content": "Error: timeout"}  # before the user's text
    assert rest == {"role": "user", "content": [{"type": "text", "text": "try again"}]}
    assert am.to_chat({"model": "m", "max_tokens": 5, "messages": user("x"),
                       "tool_choice": {"type": "any"}})["tool_choice"] == "required"


@pytest.mark.parametrize("body, param", [
    ({"messages": user("x")}, "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]},
     "messages[0].content[0].type"),
    ({"max_tokens": 5, "messages": user("x"), "thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"max_tokens": 5, "messages": user("x"), "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0].type"),
    ({"max_tokens": 5, "messages": user("x"), "mcp_servers": []}, "mcp_servers"),
    ({"max_tokens": 5, "messages": user("x"), "frequency_penalty": 1}, "frequency_penalty"),
    ({"max_tokens": 5, "messages": user("x"), "temperature": 1.5}, "temperature"),
    ({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}]}, "messages[0].content[0].tool_use_id"),
])
def test_untranslatable_or_wrong_fields_are_400_naming_the_anthropic_path(gw, body, param):
    # raw HTTP: the SDK itself refuses some of these bodies before sending them
    r = httpx.post(gw.url + "/v1/messages", json={"model": "echo", **body}, headers={"x-api-key": "app-secret"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert f"`{param}" in error["message"]


def test_cache_control_hints_are_accepted(client):
    m = client.messages.create(model="echo", max_tokens=16, system=[
        {"type": "text", "text": "Long shared instructions.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}])
    assert m.content[0].text == "hi"


def test_guardrails_apply_in_this_dialect_too(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="echo", max_tokens=16, messages=user("tell me about nightingale"))
    assert e.value.body["error"]["gateway_type"] == "guardrail_violation"
    m = client.messages.create(model="echo", max_tokens=16, messages=user("this is classified stuff"))
    assert m.content == [] and m.stop_reason == "refusal"
    with client.messages.stream(model="echo", max_tokens=16, messages=user("this is classified stuff")) as s:
        final = s.get_final_message()
    assert "classified" not in "".join(b.text for b in final.content) and final.stop_reason == "refusal"


def test_upstream_errors_keep_their_status_in_anthropic_shape(client):
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="limited", max_tokens=16, messages=user("x"))
    assert e.value.body["error"]["type"] == "rate_limit_error" and e.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APIStatusError):  # a cut stream ends with an `error` event, never silently
        with client.messages.stream(model="cut", max_tokens=64, messages=user("one two three four five six")) as s:
            list(s.text_stream)


def test_models_list_in_anthropic_shape(gw, client):
    assert [m.id for m in client.models.list()] == ["echo", "tool", "cut", "limited"]
    openai_shape = httpx.get(gw.url + "/v1/models", headers={"Authorization": "Bearer app-secret"}).json()
    assert openai_shape["object"] == "list" and openai_shape["data"][0]["object"] == "model"


def test_cached_answers_are_served_in_this_dialect(tmp_path):
    root = write_policies(tmp_path, """
    upstreams: {mock: {type: mock}}
    models: {echo: {targets: [{upstream: mock, model: echo}]}}
    server: {watch_interval_s: 0}
    cache: {enabled: true}
    """)
    with running_gateway(root) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=30)
        body = dict(model="echo", max_tokens=32, messages=user("cache me please"), extra_body={"temperature": 0})
        first = c.messages.with_raw_response.create(**body)
        second = c.messages.with_raw_response.create(**body)
        assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
        assert second.parse().content[0].text == "cache me please" and second.parse().stop_reason == "end_turn"
        with c.messages.stream(**body) as s:
            assert s.get_final_message().content[0].text == "cache me please"


def test_count_tokens_is_the_gateways_estimate(client):
    n = client.messages.count_tokens(model="echo", messages=user("Hello there friend"))
    more = client.messages.count_tokens(model="echo", system="You are a careful assistant.", tools=TOOLS,
                                        messages=user("Hello there friend"))
    assert 0 < n.input_tokens < more.input_tokens
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model="echo", messages=[])


# ---- the renderer, on its own ------------------------------------------------------------------
def _chunks(text: str, args: str, cuts: random.Random) -> list[dict]:
    """A chat stream of `text` then one tool call with `args`, split at random places."""
    def pieces(s):
        out, i = [], 0
        while i < len(s):
            j = i + cuts.randint(1, 6)
            out.append(s[i:j])
            i = j
        return out
    base = {"id": "c", "model": "m"}
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    out += [{**base, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces(text)]
    out.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]})
    out += [{**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}}]}
            for p in pieces(args)]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return out


def _replay(raw: bytes) -> dict:
    """Accumulate an Anthropic event stream into the final message, as a client would."""
    message, blocks = None, []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        evt = json.loads(data.removeprefix("data: "))
        assert evt["type"] == name.removeprefix("event: ")
        if evt["type"] == "message_start":
            message = evt["message"]
        elif evt["type"] == "content_block_start":
            assert evt["index"] == len(blocks)
            blocks.append({**evt["content_block"], "_json": ""})
        elif evt["type"] == "content_block_delta":
            d = evt["delta"]
            if d["type"] == "text_delta":
                blocks[evt["index"]]["text"] += d["text"]
            else:
                blocks[evt["index"]]["_json"] += d["partial_json"]
        elif evt["type"] == "message_delta":
            message.update(evt["delta"], usage=evt["usage"])
    for b in blocks:
        if b["type"] == "tool_use":
            b["input"] = json.loads(b["_json"])
        del b["_json"]
    return {**message, "content": blocks}


def test_rechunked_streams_render_the_same_message_as_the_non_streamed_form():
    text, args = "The weather tool will know.", json.dumps({"city": "São Paulo", "days": [1, 2, 3]})
    ex = Exchange("chat.completions", {})
    ex.model, ex.usage = "m", Usage(40, 12, cached=8)
    completion = {"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": text,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": args}}]}}]}
    want = am.from_chat(completion, ex)
    assert want["usage"] == {"input_tokens": 32, "output_tokens": 12, "cache_read_input_tokens": 8,
                             "cache_creation_input_tokens": 0}
    for seed in range(25):
        render = AnthropicStream(ex, 40)
        raw = b"".join(render.feed(c) for c in _chunks(text, args, random.Random(seed))) + render.finish({})
        got = _replay(raw)
        assert got["content"] == want["content"] and got["stop_reason"] == "tool_use" == want["stop_reason"]
        assert got["usage"] == want["usage"] and got["id"] == want["id"]
