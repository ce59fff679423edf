"""The `anthropic` upstream type against the mock's Anthropic wire format: the mock itself checked
with the official `anthropic` SDK, then chat, Messages and Responses clients through the gateway to
it, with usage (prompt-cache reads and writes) and cost in the ledger equal to the upstream's figures."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from gateway.upstreams.anthropic_wire import StreamTranslator, to_anthropic
from gateway.errors import InvalidRequest
from tests.helpers import ledger_row, openai_client, running_gateway, running_mock_server, write_policies

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
PRICING = """
upstreams:
  claude:
    default: {input: 3.00, cached_input: 0.30, cache_write_input: 3.75, output: 15.00, source: test, as_of: 2025-01-01}
"""
STRICT = """
request:
  - {type: pii, name: pii, mode: regex, entities: {EMAIL_ADDRESS: pseudonymize}}
response:
  - {type: denylist, name: no-leaks, action: block, words: [classified], stream: hold}
"""


@pytest.fixture(scope="module")
def mock():
    with running_mock_server() as server:
        yield server


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    root = write_policies(tmp_path_factory.mktemp("p"), f"""
    upstreams:
      claude: {{type: anthropic, base_url: "{mock.url}", api_key_env: TEST_ANTHROPIC_KEY}}
      claude-caching: {{type: anthropic, base_url: "{mock.url}", api_key_env: TEST_ANTHROPIC_KEY, prompt_caching: auto}}
    models:
      claude: {{targets: [{{upstream: claude, model: echo}}]}}
      claude-cached: {{targets: [{{upstream: claude, model: "echo?cache_read_tokens=5&cache_write_tokens=3"}}]}}
      claude-tool: {{targets: [{{upstream: claude, model: tool}}]}}
      claude-caching: {{targets: [{{upstream: claude-caching, model: tool}}]}}
      claude-busy: {{targets: [{{upstream: claude, model: "echo?fail_status=529&fail_times=1"}}], retries: 1,
                    backoff: {{base_s: 0.01, max_s: 0.01}}}}
      claude-cut: {{targets: [{{upstream: claude, model: "echo?cut_after=5"}}], retries: 0}}
    open_mode: {{policy: strict}}
    server: {{watch_interval_s: 0}}
    """, pricing=PRICING, strict=STRICT)
    with running_gateway(root, ledger=root / "ledger.db") as server:
        server.ledger = root / "ledger.db"
        yield server


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# ---- the mock speaks Anthropic's format: the official SDK parses it ----------------------------
def test_the_mock_wire_format_parses_with_the_anthropic_sdk(mock):
    c = anthropic.Anthropic(base_url=mock.url, api_key="k", max_retries=0)
    m = c.messages.create(model="echo?cache_read_tokens=2", max_tokens=50, messages=[{"role": "user", "content": "hi there"}])
    assert m.content[0].text == "hi there" and m.stop_reason == "end_turn" and m.usage.cache_read_input_tokens == 2
    with c.messages.stream(model="tool", max_tokens=50, messages=[{"role": "user", "content": "Oslo"}], tools=[
            {"name": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Oslo"}
    with pytest.raises(anthropic.InternalServerError) as e:  # 529: the SDK's overloaded error
        c.messages.create(model="echo?fail_status=529", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 529 and e.value.body["error"]["type"] == "overloaded_error"
    r = httpx.post(mock.url + "/v1/messages", json={"model": "echo", "max_tokens": 5, "messages": []},
                   headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


# ---- through the gateway -------------------------------------------------------------------------
def test_chat_client_to_anthropic_upstream_with_usage_and_cost(gw):
    c = openai_client(gw)
    r = c.chat.completions.create(model="claude-cached", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello to you"}])
    assert r.choices[0].message.content == "hello to you" and r.choices[0].finish_reason == "stop"
    u = r.usage
    assert u.prompt_tokens_details.cached_tokens == 5 and u.completion_tokens == 3
    info = r.model_extra["gateway"]
    assert info["usage"]["cache_write_tokens"] == 3 and info["usage"]["source"] == "upstream"
    fresh = u.prompt_tokens - 5 - 3
    want = (fresh * 3.00 + 5 * 0.30 + 3 * 3.75 + 3 * 15.00) / 1e6
    assert info["cost_usd"] == pytest.approx(want)
    row = ledger_row(gw.ledger, info["request_id"])
    assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (u.prompt_tokens, 5, 3)
    assert row["cache_write_tokens"] == 3
    assert row["cost_usd"] == pytest.approx(want) and row["upstream"] == "claude"


def test_streamed_chat_client_gets_usage_from_the_anthropic_stream(gw):
    c = openai_client(gw)
    chunks = list(c.chat.completions.create(model="claude-cached", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "one two three four"}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "one two three four"
    usage = next(ch.usage for ch in chunks if ch.usage)
    assert usage.completion_tokens == 4 and usage.prompt_tokens_details.cached_tokens == 5
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_tool_calls_round_trip_through_an_anthropic_upstream(gw):
    c = openai_client(gw)
    first = c.chat.completions.create(model="claude-tool", tools=TOOLS, messages=[{"role": "user", "content": "Paris"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}
    streamed = list(c.chat.completions.create(model="claude-tool", tools=TOOLS, stream=True,
                                              messages=[{"role": "user", "content": "Paris"}]))
    args = "".join(ch.choices[0].delta.tool_calls[0].function.arguments or ""
                   for ch in streamed if ch.choices and ch.choices[0].delta.tool_calls)
    assert json.loads(args) == {"city": "Paris"}
    second = c.chat.completions.create(model="claude-tool", tools=TOOLS, messages=[
        {"role": "user", "content": "Paris"}, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert second.choices[0].message.content == "The tool said: sunny"


def test_anthropic_sdk_through_the_gateway_to_an_anthropic_upstream(gw):
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    m = c.messages.create(model="claude-cached", max_tokens=64, messages=[{"role": "user", "content": "good day"}])
    assert m.content[0].text == "good day" and m.usage.cache_read_input_tokens == 5
    with c.messages.stream(model="claude", max_tokens=64, messages=[{"role": "user", "content": "a b c"}]) as s:
        assert s.get_final_message().content[0].text == "a b c"


def test_responses_client_to_an_anthropic_upstream(gw):
    c = openai_client(gw)
    r = c.responses.create(model="claude-tool", input="Rome", tools=[
        {"type": "function", "name": "get_weather", "parameters": TOOLS[0]["function"]["parameters"]}])
    assert r.output[0].type == "function_call" and json.loads(r.output[0].arguments) == {"city": "Rome"}
    with c.responses.stream(model="claude", input="streamed words here") as s:
        assert s.get_final_response().output_text == "streamed words here"


def test_pii_pseudonyms_are_restored_from_an_anthropic_upstream_stream(gw):
    c = openai_client(gw)
    chunks = list(c.chat.completions.create(model="claude", stream=True,
                                            messages=[{"role": "user", "content": "write to ada@example.com now"}]))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "write to ada@example.com now"
    (pii,) = [v for v in chunks[-1].model_extra["gateway"]["verdicts"] if v["check"] == "pii"]
    assert pii["action"] == "redact"  # the upstream echoed a pseudonym, and the client got the address back
    with anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0).messages.stream(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "mail bob@example.org please"}]) as s:
        assert s.get_final_message().content[0].text == "mail bob@example.org please"


def test_529_overloaded_is_retried(gw):
    r = openai_client(gw).chat.completions.with_raw_response.create(
        model="claude-busy", messages=[{"role": "user", "content": "hi"}])
    info = r.parse().model_extra["gateway"]
    assert [a["outcome"] for a in info["attempts"]] == ["http_529", "ok"]


def test_a_cut_anthropic_stream_ends_with_an_error_not_silently(gw):
    with pytest.raises(openai.APIError):
        list(openai_client(gw).chat.completions.create(model="claude-cut", stream=True, messages=[
            {"role": "user", "content": "one two three four five six seven"}]))


@pytest.mark.parametrize("extra, param", [({"n": 2}, "n"), ({"temperature": 1.5}, "temperature"),
                                          ({"logit_bias": {"1": 1}}, "logit_bias"),
                                          ({"response_format": {"type": "json_object"}}, "response_format.type")])
def test_chat_fields_an_anthropic_upstream_cannot_take_are_400(gw, extra, param):
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "claude", "messages": [
        {"role": "user", "content": "x"}], **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


# ---- the translation, on its own -----------------------------------------------------------------
def test_chat_body_to_messages_request():
    out = to_anthropic({"model": "m", "max_tokens": 10, "stop": "END", "user": "u", "tools": TOOLS,
                        "tool_choice": "required", "parallel_tool_calls": False, "messages": [
                            {"role": "system", "content": "sys"}, {"role": "user", "content": "a"},
                            {"role": "assistant", "content": "calling", "tool_calls": [
                                {"id": "t1", "type": "function", "function": {"name": "get_weather",
                                                                              "arguments": '{"city": "Oslo"}'}}]},
                            {"role": "tool", "tool_call_id": "t1", "content": "cold"},
                            {"role": "user", "content": [{"type": "text", "text": "and?"},
                                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
                       "claude-x", 4096)
    assert out["system"] == "sys" and out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "u"}
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    user, assistant, results = out["messages"]
    assert assistant["content"][1] == {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}}
    # the tool result and the next user text share one user turn (the Messages API wants turns alternating)
    assert [b["type"] for b in results["content"]] == ["tool_result", "text", "image"]
    assert results["content"][2]["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    with pytest.raises(InvalidRequest):
        to_anthropic({"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}, "m", 10)


def test_stream_translator_maps_usage_and_stop_reasons():
    tr = StreamTranslator()
    events = [{"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {
        "input_tokens": 10, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"}]
    chunks = [c for e in events for c in tr.feed(e)]
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 16, "completion_tokens": 7, "total_tokens": 23,
                                   "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2}}
    assert tr.done


def test_prompt_caching_auto_marks_breakpoints_and_the_upstream_accepts_them(gw):
    body = {"model": "m", "messages": [{"role": "system", "content": "Long shared instructions."},
                                       {"role": "user", "content": "Paris"}], "tools": TOOLS}
    out = to_anthropic(body, "claude-x", 100, cache=True)
    assert out["system"] == [{"type": "text", "text": "Long shared instructions.", "cache_control": {"type": "ephemeral"}}]
    assert out["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert out["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in str(to_anthropic(body, "claude-x", 100))
    r = openai_client(gw).chat.completions.create(model="claude-caching", tools=TOOLS, messages=body["messages"])
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}
