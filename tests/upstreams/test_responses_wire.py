"""The chat form to OpenAI's Responses API and back (`openai` upstreams with `api: responses`)."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.responses_wire import to_completion, to_responses


def test_chat_body_to_a_responses_request():
    out = to_responses({"model": "x", "max_tokens": 50, "reasoning_effort": "high", "user": "u",
                        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {}, "strict": True}},
                        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                        "tool_choice": {"type": "function", "function": {"name": "f"}},
                        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "thinking", "tool_calls": [
                                         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                                     {"role": "tool", "tool_call_id": "c1", "content": "r"}]}, "o3-pro")
    assert out["model"] == "o3-pro" and out["store"] is False and out["max_output_tokens"] == 50
    assert out["reasoning"] == {"effort": "high"} and out["tool_choice"] == {"type": "function", "name": "f"}
    assert out["text"]["format"] == {"type": "json_schema", "name": "o", "schema": {}, "strict": True}
    assert [i["type"] for i in out["input"]] == ["message", "message", "message", "function_call",
                                                "function_call_output"]
    assert out["input"][2]["content"] == [{"type": "output_text", "text": "thinking"}]
    assert out["tools"][0]["strict"] is False  # chat's default kept (the Responses API defaults to strict)
    for bad in ({"stop": ["x"]}, {"seed": 3}, {"n": 2}):
        with pytest.raises(InvalidRequest) as e:
            to_responses({"model": "x", "messages": [{"role": "user", "content": "q"}], **bad}, "m")
        assert e.value.param == next(iter(bad))


def test_responses_answer_to_a_completion():
    done = to_completion({"object": "response", "status": "incomplete", "id": "resp_1", "model": "o3-pro",
                          "incomplete_details": {"reason": "max_output_tokens"},
                          "output": [{"type": "reasoning", "summary": []},
                                     {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}],
                          "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4},
                                    "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 28},
                                    "total_tokens": 39}}, "gw-1", "m")
    assert done["choices"][0]["finish_reason"] == "length" and done["choices"][0]["message"]["content"] == "Hi"
    assert done["usage"]["completion_tokens_details"] == {"reasoning_tokens": 28}
    with pytest.raises(UpstreamError):
        to_completion({"object": "response", "status": "failed", "output": [], "error": {"message": "boom"}}, "g", "m")
