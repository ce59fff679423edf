"""What makes two requests one cache key, Cache-Control parsing, and streams <-> completions."""

from __future__ import annotations

import asyncio

import orjson

from gateway.cache.keys import cache_control, deterministic, request_key, scope_of
from gateway.cache.replay import CachedStream, StreamAssembler, completion_chunks

BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}


def key(body, scope="key:a", model="m", prompt=None):
    return request_key(scope, "chat.completions", model, prompt, body)


def test_the_key_ignores_delivery_fields_and_order_but_not_anything_that_changes_the_answer():
    base = key(BODY)
    assert key({**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u1",
                "metadata": {"a": 1}}) == base
    assert key(dict(reversed(list(BODY.items())))) == base
    for changed in ({"temperature": 0.5}, {"max_tokens": 9}, {"tools": [{"type": "function"}]},
                    {"response_format": {"type": "json_object"}}, {"seed": 1}, {"some_new_param": True},
                    {"messages": [{"role": "user", "content": "Hi!"}]}):
        assert key({**BODY, **changed}) != base, changed
    assert key(BODY, scope="key:b") != base and key(BODY, model="n") != base
    assert key(BODY, prompt="sha256:1") != key(BODY, prompt="sha256:2")


def test_scope_is_the_key_or_its_group_never_global():
    assert scope_of("key", "alice", "team") == "key:alice"
    assert scope_of("group", "alice", "team") == "group:team"
    assert scope_of("group", "alice", None) == "key:alice"


def test_deterministic_means_temperature_zero_or_a_seed():
    assert deterministic({"temperature": 0}) and deterministic({"temperature": 0.0})
    assert deterministic({"temperature": 1, "seed": 3})
    assert not deterministic({}) and not deterministic({"temperature": 0.2})
    assert not deterministic({"temperature": False}) and not deterministic({"seed": True})


def test_cache_control_directives():
    assert cache_control(None) == (None, None)
    assert cache_control("no-store") == ("bypass", None)
    assert cache_control("no-cache, no-store") == ("bypass", None)
    assert cache_control("No-Cache") == ("refresh", None)
    assert cache_control("max-age=30") == (None, 30.0)
    assert cache_control("max-age=soon") == (None, None)


def test_a_completion_streams_back_into_the_same_completion():
    completion = {
        "id": "c1", "object": "chat.completion", "created": 5, "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "word " * 40}, "logprobs": None,
             "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}]},
             "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 40, "total_tokens": 43}}
    payloads = completion_chunks(completion)
    assert len(payloads) > 6  # pieces, not one blob

    async def drain():
        stream = CachedStream(payloads)
        first = [await anext(stream)]
        return first + stream.take_ready()

    assembler = StreamAssembler()
    for p in asyncio.run(drain()):
        assembler.add(orjson.loads(p))
    assert assembler.completion() == completion
