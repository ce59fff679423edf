from gateway.upstreams import mock_model
from gateway.upstreams.mock_model import MockBehaviour, behaviour_for


def test_model_name_options_and_overrides_merge():
    b = behaviour_for(MockBehaviour(latency_ms=5), "fixed?text=hi&fail_status=429&fail_times=1",
                      {"retry_after": 2})
    assert (b.mode, b.text, b.fail_status, b.fail_times, b.retry_after, b.latency_ms) == (
        "fixed", "hi", 429, 1, 2, 5)


def test_scripted_replies(tmp_path):
    script = tmp_path / "s.yaml"
    script.write_text("- {match: 'refund', reply: 'Refunds take 5 days.'}\n- {reply: 'Sorry?'}\n")
    b = MockBehaviour(mode="scripted", script=str(script))
    ask = lambda text: mock_model.reply_text(b, {"messages": [{"role": "user", "content": text}]}, [])  # noqa: E731
    assert ask("Where is my REFUND") == "Refunds take 5 days."
    assert ask("hello") == "Sorry?"


def test_usage_follows_openai_message_accounting():
    body = {"messages": [{"role": "user", "content": "hello world"}]}
    # 3 (priming) + 3 (message) + 2 ("hello world") + 1 ("user")
    assert mock_model.usage_for(body, "hello world") == {"prompt_tokens": 9, "completion_tokens": 2,
                                                         "total_tokens": 11}


def test_stream_chunks_reassemble_to_reply():
    chunks = mock_model.stream_chunks({"stream_options": {"include_usage": True}}, "m", "Hi there, you.", "id")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hi there, you." and chunks[-1]["usage"]["completion_tokens"] > 0
