"""The `gemini` and `azure-openai` upstream types against the mock server's wire formats: the Gemini
mock checked with the official `google-genai` SDK; safety blocks as content_filter; usage (cached and
thinking tokens) mapped; Azure's deployment URLs, api-version, api-key and v1 API."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import types

from gateway.upstreams.gemini_wire import StreamTranslator, to_completion, to_gemini
from tests.helpers import ledger_row, openai_client, running_gateway, running_mock_server, write_policies


@pytest.fixture(scope="module")
def mock():
    with running_mock_server() as server:
        yield server


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("T_GEMINI", "g-key")
    mp.setenv("T_AZURE", "a-key")
    root = write_policies(tmp_path_factory.mktemp("p"), f"""
    upstreams:
      gemini: {{type: gemini, base_url: "{mock.url}", api_key_env: T_GEMINI}}
      azure: {{type: azure-openai, endpoint: "{mock.url}", api_key_env: T_AZURE, api_version: "2024-10-21"}}
      azure-v1: {{type: azure-openai, endpoint: "{mock.url}", api_key_env: T_AZURE, api_version: v1, auth: bearer}}
      azure-nokey: {{type: azure-openai, endpoint: "{mock.url}", api_key_env: null}}
    models:
      g: {{targets: [{{upstream: gemini, model: echo}}]}}
      g-cached: {{targets: [{{upstream: gemini, model: "echo?cache_read_tokens=2"}}]}}
      g-blocked-prompt: {{targets: [{{upstream: gemini, model: "echo?blocked=prompt"}}]}}
      g-blocked-answer: {{targets: [{{upstream: gemini, model: "echo?blocked=answer"}}]}}
      g-limited: {{targets: [{{upstream: gemini, model: "echo?fail_status=429&retry_after=3"}}], retries: 0}}
      g-cut: {{targets: [{{upstream: gemini, model: "echo?cut_after=2"}}], retries: 0}}
      az: {{targets: [{{upstream: azure, model: echo}}]}}
      az-v1: {{targets: [{{upstream: azure-v1, model: echo}}]}}
      az-nokey: {{targets: [{{upstream: azure-nokey, model: echo}}], retries: 0}}
    server: {{watch_interval_s: 0}}
    """)
    with running_gateway(root, ledger=root / "ledger.db") as server:
        server.ledger = root / "ledger.db"
        yield server
    mp.undo()


def test_the_gemini_mock_parses_with_the_google_genai_sdk(mock):
    c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=mock.url))
    r = c.models.generate_content(model="echo", contents="hello there")
    assert r.text == "hello there" and r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.candidates_token_count == 2 and r.usage_metadata.prompt_token_count > 0
    chunks = list(c.models.generate_content_stream(model="echo", contents="a b c"))
    assert "".join(ch.text for ch in chunks) == "a b c" and chunks[-1].usage_metadata.total_token_count > 0
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="w", parameters_json_schema={
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})])
    r = c.models.generate_content(model="tool", contents="Oslo", config=types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    assert r.function_calls[0].name == "w" and r.function_calls[0].args == {"city": "Oslo"}
    r = httpx.post(mock.url + "/v1beta/models/echo:generateContent", json={"contents": []})
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"


def test_gemini_usage_and_cost_fields_reach_the_ledger(gw):
    r = openai_client(gw).chat.completions.create(model="g-cached", messages=[
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "one two"}])
    assert r.choices[0].message.content == "one two" and r.usage.prompt_tokens_details.cached_tokens == 2
    row = ledger_row(gw.ledger, r.model_extra["gateway"]["request_id"])
    assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (r.usage.prompt_tokens, 2, 2)


def test_gemini_safety_blocks_are_content_filter(gw):
    c = openai_client(gw)
    r = c.chat.completions.create(model="g-blocked-prompt", messages=[{"role": "user", "content": "x y"}])
    assert r.choices[0].finish_reason == "content_filter" and not r.choices[0].message.content
    r = c.chat.completions.create(model="g-blocked-answer", messages=[{"role": "user", "content": "one two three four"}])
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == "one two"
    chunks = list(c.chat.completions.create(model="g-blocked-answer", stream=True,
                                            messages=[{"role": "user", "content": "one two three four"}]))
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == \
        ["content_filter"]
    resp = c.responses.create(model="g-blocked-answer", input="one two three four")
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "content_filter"


def test_gemini_errors_keep_status_and_retry_after_and_a_cut_stream_is_an_error(gw):
    import openai

    with pytest.raises(openai.RateLimitError) as e:
        openai_client(gw).chat.completions.create(model="g-limited", messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.APIError):
        list(openai_client(gw).chat.completions.create(model="g-cut", stream=True, messages=[
            {"role": "user", "content": "one two three four five"}]))


def test_gemini_translation_of_tools_thinking_and_formats():
    out = to_gemini({"model": "m", "max_tokens": 20, "temperature": 0.1, "stop": ["X"], "reasoning_effort": "low",
                     "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
                     "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                     "tool_choice": {"type": "function", "function": {"name": "f"}},
                     "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
                                  {"role": "assistant", "content": None, "tool_calls": [
                                      {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                                  {"role": "tool", "tool_call_id": "c1", "content": "r"}]})
    assert out["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert out["generationConfig"] == {"temperature": 0.1, "maxOutputTokens": 20, "stopSequences": ["X"],
                                       "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
                                       "thinkingConfig": {"thinkingBudget": 1024}}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][2]["parts"][0] == {"functionResponse": {"name": "f", "response": {"content": "r"}}}
    done = to_completion({"candidates": [{"content": {"parts": [{"text": "hm", "thought": True}, {"text": "ok"}]},
                                          "finishReason": "MAX_TOKENS"}],
                          "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 5,
                                            "cachedContentTokenCount": 4}}, "gw-1", "m")
    assert done["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}
    assert done["usage"] == {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18,
                             "prompt_tokens_details": {"cached_tokens": 4},
                             "completion_tokens_details": {"reasoning_tokens": 5}}
    tr = StreamTranslator("gw-1", "m")
    first = tr.feed({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                                     "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3}})
    assert first[0]["choices"][0]["finish_reason"] == "tool_calls" and tr.done
    assert first[0]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{\"a\":1}"}


def test_azure_deployment_urls_api_version_and_auth(gw):
    c = openai_client(gw)
    for model in ("az", "az-v1"):
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi azure"}])
        assert r.choices[0].message.content == "hi azure"
        chunks = list(c.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": "a b"}]))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "a b"
    import openai

    with pytest.raises(openai.APIStatusError) as e:  # no key: Azure's 401, passed on as the upstream's failure
        c.chat.completions.create(model="az-nokey", messages=[{"role": "user", "content": "x"}])
    assert "Access denied" in e.value.message
