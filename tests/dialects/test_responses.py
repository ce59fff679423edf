"""`POST /v1/responses` end to end with the official `openai` SDK against the mock model: plain,
streamed, tools, previous_response_id (per key, TTL, store: false), GET/DELETE, guardrails, errors,
plus the stream renderer fed arbitrarily re-chunked upstream streams."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import openai
import pytest

from gateway.auth import hash_key
from gateway.dialects import responses as rs
from gateway.dialects.responses_stream import ResponsesStream
from gateway.dialects.stored_responses import ResponsesSettings, StoredResponses
from gateway.errors import GatewayError, InvalidRequest
from gateway.exchange import Exchange
from gateway.metering.usage import Usage
from gateway.state.embedded_responses import EmbeddedResponses
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
  - name: other
    sha256: "{hash_key('other-secret')}"
    policy: strict
server: {{watch_interval_s: 0}}
"""
STRICT = """
request:
  - {type: denylist, name: off-limits, action: block, words: [nightingale]}
  - {type: pii, name: pii, mode: regex, entities: {EMAIL_ADDRESS: pseudonymize}}
response:
  - {type: denylist, name: no-leaks, action: block, words: [classified], stream: hold}
"""
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = write_policies(tmp_path_factory.mktemp("p"), GATEWAY, strict=STRICT)
    with running_gateway(root, ledger=root / "ledger.db") as server:
        server.ledger = root / "ledger.db"
        yield server


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="app-secret", max_retries=0, timeout=30)


def test_text_answer_with_usage_status_and_ledger_row(gw, client):
    r = client.responses.create(model="echo", instructions="Be brief.", input="Hello there friend")
    assert r.object == "response" and r.status == "completed" and r.output_text == "Hello there friend"
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens == 3
    assert r.usage.total_tokens == r.usage.input_tokens + 3 and r.instructions == "Be brief."
    info = r.model_extra["gateway"]
    assert r.id == "resp_" + info["request_id"].removeprefix("gw-")
    row = ledger_row(gw.ledger, info["request_id"])
    assert row["endpoint"] == "responses" and row["key"] == "app" and row["output_tokens"] == 3


def test_streamed_text_and_event_sequence(gw, client):
    with client.responses.stream(model="echo", input="one two three four") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "one two three four" == final.output_text
    assert final.status == "completed" and final.usage.output_tokens == 4 and final.usage.input_tokens > 0
    body = {"model": "echo", "input": "a b", "stream": True}
    with httpx.stream("POST", gw.url + "/v1/responses", json=body, headers={"Authorization": "Bearer app-secret"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines())
    names = [line[7:] for line in lines if line.startswith("event: ")]
    seqs = [json.loads(line[6:])["sequence_number"] for line in lines if line.startswith("data: ")]
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert seqs == list(range(len(names))) and "[DONE]" not in "\n".join(lines)


def test_function_call_round_trip_streamed_and_by_previous_response_id(client):
    first = client.responses.create(model="tool", input="Paris", tools=TOOLS)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    with client.responses.stream(model="tool", input="Paris", tools=TOOLS) as s:
        arg_deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        streamed = s.get_final_response()
    assert json.loads("".join(arg_deltas)) == {"city": "Paris"}
    assert [(o.type, o.name) for o in streamed.output] == [("function_call", "get_weather")]
    # the tool's output continues the stored conversation (the call itself is not re-sent)
    second = client.responses.create(model="tool", previous_response_id=first.id, tools=TOOLS,
                                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "The tool said: sunny" and second.previous_response_id == first.id
    # the same turn sent as items, without a stored response
    items = [{"role": "user", "content": "Paris"}, call.model_dump(exclude_none=True),
             {"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}]
    assert client.responses.create(model="tool", input=items, tools=TOOLS, store=False).output_text == \
        "The tool said: rainy"


def test_previous_response_id_continues_the_conversation(gw, client):
    first = client.responses.create(model="echo", input="My name is Ada.")
    second = client.responses.create(model="echo", previous_response_id=first.id, input="What is my name?")
    assert second.output_text == "What is my name?"
    # the upstream saw the whole conversation: input tokens grow with the history
    assert second.usage.input_tokens > first.usage.input_tokens + 3
    fetched = client.responses.retrieve(second.id)
    assert fetched.id == second.id and fetched.output_text == "What is my name?"
    # streamed continuation of a streamed response
    with client.responses.stream(model="echo", previous_response_id=second.id, input="And again?") as s:
        third = s.get_final_response()
    assert third.usage.input_tokens > second.usage.input_tokens
    assert client.responses.retrieve(third.id).output_text == "And again?"
    items = list(client.responses.input_items.list(second.id, order="asc"))
    assert [(i.type, i.role, i.content[0].text) for i in items] == [("message", "user", "What is my name?")]
    tool_items = [{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "input_text", "text": "b"}]}]
    fourth = client.responses.create(model="echo", input=tool_items)
    page = client.responses.input_items.list(fourth.id, limit=1)
    assert [i.content[0].text for i in page.data] == ["b"] and page.has_more  # newest first by default
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=gw.url + "/v1", api_key="other-secret", max_retries=0).responses.input_items.list(fourth.id)


def test_stored_responses_are_per_key_and_store_false_is_honoured(gw, client):
    mine = client.responses.create(model="echo", input="secret plans")
    other = openai.OpenAI(base_url=gw.url + "/v1", api_key="other-secret", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.BadRequestError) as e:
        other.responses.create(model="echo", previous_response_id=mine.id, input="continue")
    assert e.value.body["param"] == "previous_response_id" and "not found" in e.value.body["message"]
    unstored = client.responses.create(model="echo", input="forget me", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="echo", previous_response_id=unstored.id, input="x")
    deleted = client.responses.delete(mine.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(mine.id)


def test_guardrails_and_errors_in_this_dialect(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="echo", input="tell me about nightingale")
    assert e.value.body["type"] == "guardrail_violation"
    blocked = client.responses.create(model="echo", input="this is classified stuff")
    assert blocked.status == "incomplete" and blocked.incomplete_details.reason == "content_filter"
    assert "classified" not in blocked.output_text
    with client.responses.stream(model="echo", input="this is classified stuff") as s:
        events = list(s)
    assert events[-1].type == "response.incomplete" and "classified" not in events[-1].response.output_text
    with pytest.raises(openai.RateLimitError) as e:
        client.responses.create(model="limited", input="x")
    assert e.value.response.headers["retry-after"] == "7"
    with client.responses.stream(model="cut", input="one two three four five six") as s:
        events = list(s)  # a cut stream ends with response.failed, never silently
    assert events[-1].type == "response.failed" and events[-1].response.error.message


def test_pii_pseudonyms_are_restored_in_a_responses_stream(client):
    with client.responses.stream(model="echo", input="please write to ada.l@example.com today") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert deltas == final.output_text == "please write to ada.l@example.com today"
    (pii,) = [v for v in final.model_extra["gateway"]["verdicts"] if v["check"] == "pii"]
    assert pii["action"] == "redact"  # the upstream saw a pseudonym; the client gets the address back


@pytest.mark.parametrize("body, param", [
    ({"input": []}, "input"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"input": "x", "truncation": "auto"}, "truncation"),
    ({"input": "x", "include": ["message.output_text.logprobs"]}, "include[0]"),
    ({"input": "x", "frequency_penalty": 1}, "frequency_penalty"),
    ({"input": "x", "temperature": 3}, "temperature"),
    ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
])
def test_untranslatable_or_wrong_fields_are_400_naming_the_field(gw, body, param):
    r = httpx.post(gw.url + "/v1/responses", json={"model": "echo", **body},
                   headers={"Authorization": "Bearer app-secret"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert f"`{param}" in error["message"] or param == "previous_response_id"


def test_auth_errors_are_openai_shaped(gw):
    r = httpx.post(gw.url + "/v1/responses", json={"model": "echo", "input": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_request_translation():
    chat, conversation = rs.to_chat({
        "model": "m", "instructions": "sys", "max_output_tokens": 50, "temperature": 0.2, "user": "u1",
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low"}, "tools": TOOLS, "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False, "include": ["reasoning.encrypted_content"],
        "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
                  {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                               {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
                  {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
                  {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "cold"}]}, [])
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.2 and chat["user"] == "u1"
    assert chat["response_format"]["json_schema"] == {"name": "out", "schema": {"type": "object"}, "strict": True}
    assert chat["reasoning_effort"] == "low" and chat["parallel_tool_calls"] is False
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    system, dev, user, assistant, tool = chat["messages"]
    assert system == {"role": "system", "content": "sys"} and dev == {"role": "system", "content": "dev"}
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
    assert assistant["content"] == "Let me check." and assistant["tool_calls"][0]["id"] == "c1"
    assert tool == {"role": "tool", "tool_call_id": "c1", "content": "cold"}
    assert conversation == chat["messages"][1:]  # instructions are not carried over to a continuation


# ---- the store, on its own ---------------------------------------------------------------------
def test_store_expires_and_caps_memory():
    async def run():
        backend = EmbeddedResponses(max_bytes=2000)
        store = StoredResponses(ResponsesSettings(ttl_s=0.05), backend)
        await store.keep("k", {"id": "resp_a", "output": []}, [{"role": "user", "content": "a"}])
        assert (await store.history("resp_a", "k")) == [{"role": "user", "content": "a"}]
        await asyncio.sleep(0.06)
        with pytest.raises(InvalidRequest):
            await store.history("resp_a", "k")
        long = StoredResponses(ResponsesSettings(), backend)
        for i in range(20):
            await long.keep("k", {"id": f"resp_{i}", "output": []}, [{"role": "user", "content": "x" * 200}])
        assert backend._bytes <= 2000
        assert (await long.response("resp_19", "k"))["id"] == "resp_19"
        with pytest.raises(GatewayError):
            await long.response("resp_0", "k")  # evicted, least recently used first
    asyncio.run(run())


def test_a_store_that_fails_is_a_503_on_read_and_delete():
    """The embedded store with its delete (then its reads) failing, as a Redis that went away does."""
    class Failing(EmbeddedResponses):
        fail_get = False

        async def get(self, response_id):
            if self.fail_get:
                raise ConnectionError("store down")
            return await super().get(response_id)

        async def delete(self, response_id):
            raise ConnectionError("store down")

    async def run():
        backend, errors = Failing(max_bytes=10_000), []
        store = StoredResponses(ResponsesSettings(), backend, on_error=lambda: errors.append(1))
        await store.keep("k", {"id": "resp_a", "output": []}, [])
        with pytest.raises(GatewayError) as e:
            await store.delete("resp_a", "k")
        assert (e.value.status, e.value.code) == (503, "response_store_unavailable")
        assert (await store.response("resp_a", "k"))["id"] == "resp_a"  # nothing was lost
        backend.fail_get = True
        with pytest.raises(GatewayError) as e:
            await store.response("resp_a", "k")
        assert e.value.status == 503 and len(errors) == 2
    asyncio.run(run())


# ---- the renderer, on its own ------------------------------------------------------------------
def _chunks(text: str, args: str, cuts: random.Random) -> list[dict]:
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
    for n, a in enumerate(args):
        out.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": n, "id": f"call_{n}", "type": "function", "function": {"name": f"f{n}", "arguments": ""}}]}}]})
        out += [{**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": n, "function": {"arguments": p}}]}}]}
                for p in pieces(a)]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return out


def _replay(raw: bytes) -> dict:
    """Accumulate a Responses event stream into the final response, as a client would, checking order."""
    final, items, seq = None, {}, 0
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        evt = json.loads(data.removeprefix("data: "))
        assert evt["type"] == name.removeprefix("event: ") and evt["sequence_number"] == seq
        seq += 1
        if evt["type"] == "response.output_item.added":
            assert evt["output_index"] == len(items)
            items[evt["output_index"]] = {**evt["item"], "_text": ""}
        elif evt["type"] in ("response.output_text.delta", "response.function_call_arguments.delta"):
            items[evt["output_index"]]["_text"] += evt["delta"]
        elif evt["type"] == "response.output_item.done":
            item = items[evt["output_index"]]
            done = evt["item"]
            got = done["content"][0]["text"] if done["type"] == "message" else done["arguments"]
            assert item["_text"] == got and item["id"] == done["id"]
        elif evt["type"] in ("response.completed", "response.incomplete"):
            final = evt["response"]
    return final


def test_rechunked_streams_render_the_same_response_as_the_non_streamed_form():
    text = "The weather tool will know."
    args = [json.dumps({"city": "São Paulo", "days": [1, 2, 3]}), json.dumps({"city": "Lima"})]
    ex = Exchange("chat.completions", {})
    ex.model, ex.usage, ex.client_body = "m", Usage(40, 12, cached=8, reasoning=3), {"model": "m", "input": "x"}
    completion = {"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": text, "tool_calls": [
            {"id": f"call_{n}", "type": "function", "function": {"name": f"f{n}", "arguments": a}}
            for n, a in enumerate(args)]}}]}
    want = rs.from_chat(completion, ex)
    assert want["usage"] == {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                             "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 52}
    for seed in range(25):
        render = ResponsesStream(ex, 40)
        raw = b"".join(render.feed(c) for c in _chunks(text, args, random.Random(seed))) + render.finish({})
        got = _replay(raw)
        assert got["output"] == want["output"] and got["status"] == "completed" == want["status"]
        assert got["usage"] == want["usage"] and got["id"] == want["id"]
        assert openai.types.responses.Response.model_validate(got).output_text == text


def test_images_to_a_model_without_vision_are_400_in_each_dialect(tmp_path):
    import anthropic

    root = write_policies(tmp_path, """
    upstreams: {mock: {type: mock}}
    models: {text-only: {targets: [{upstream: mock, model: echo}], vision: false}}
    server: {watch_interval_s: 0}
    """)
    image = "data:image/png;base64,iVBORw0KGgo="
    with running_gateway(root) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="text-only", messages=[{"role": "user", "content": [
                {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": image}}]}])
        assert e.value.body["code"] == "images_not_supported" and e.value.body["param"] == "messages[0].content[1]"
        with pytest.raises(openai.BadRequestError):
            c.responses.create(model="text-only", input=[{"role": "user", "content": [
                {"type": "input_image", "image_url": image}]}])
        with pytest.raises(anthropic.BadRequestError) as e:
            anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0).messages.create(
                model="text-only", max_tokens=10, messages=[{"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
        assert e.value.body["error"]["code"] == "images_not_supported"
        assert c.chat.completions.create(model="text-only", messages=[{"role": "user", "content": "hi"}]) \
            .choices[0].message.content == "hi"
