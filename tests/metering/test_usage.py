from gateway.metering.usage import from_upstream


def test_reads_openai_usage_with_details():
    u = from_upstream({"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                       "prompt_tokens_details": {"cached_tokens": 40},
                       "completion_tokens_details": {"reasoning_tokens": 20}})
    assert (u.input, u.output, u.cached, u.reasoning, u.source, u.note) == (100, 50, 40, 20, "upstream", None)


def test_missing_or_invalid_usage_is_none():
    assert from_upstream(None) is None
    assert from_upstream({}) is None
    assert from_upstream({"prompt_tokens": -1, "completion_tokens": 3}) is None
    assert from_upstream({"prompt_tokens": 1, "completion_tokens": "3"}) is None
    assert from_upstream({"prompt_tokens": True, "completion_tokens": 3}) is None


def test_inconsistent_usage_is_noted():
    u = from_upstream({"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 50}})
    assert u.cached == 10 and "clamped" in u.note
    u = from_upstream({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 99})
    assert (u.input, u.output) == (10, 5) and "total_tokens" in u.note


def test_embeddings_usage_has_no_completion():
    assert from_upstream({"prompt_tokens": 7, "total_tokens": 7}, embeddings=True).input == 7
