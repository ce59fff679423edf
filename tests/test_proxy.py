"""End to end through a real gateway on a loopback port, with the official openai SDK."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.helpers import openai_client, post, running_gateway, write_policies

GATEWAY = """
upstreams:
  mock: {type: mock}
  broken: {type: mock, behaviour: {fail_status: 500, fail_message: "boom"}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
  context: {targets: [{upstream: mock, model: context}]}
  flaky:
    targets: [{upstream: broken, model: echo}, {upstream: mock, model: echo}]
    retries: 1
    backoff: {base_s: 0.01}
  dead:
    targets: [{upstream: broken, model: echo}]
    retries: 1
    backoff: {base_s: 0.01}
  limited:
    targets: [{upstream: mock, model: "echo?fail_status=429&retry_after=7"}]
    retries: 0
  retry-after:
    targets: [{upstream: mock, model: "echo?fail_status=429&fail_times=1&retry_after=1"}]
    retries: 2
  slow:
    targets: [{upstream: mock, model: "echo?hang=true"}]
    timeout_s: 0.5
  garbage: {targets: [{upstream: mock, model: "echo?garbage=true"}], retries: 0}
  cut: {targets: [{upstream: mock, model: "echo?cut_after=3"}]}
  rejects: {targets: [{upstream: mock, model: "echo?fail_status=400&fail_message=bad+param"}]}
server:
  max_body_mb: 0.01
  watch_interval_s: 0
"""

STRICT = """
request:
  - {type: denylist, name: off-limits, action: block, words: [nightingale]}
  - {type: denylist, name: secrets, action: redact, replacement: "[SECRET]", patterns: ['sk-[a-z0-9]{10,}']}
response:
  - {type: denylist, name: no-leaks, action: block, words: [classified], stream: hold}
  - {type: denylist, name: cards, action: redact, replacement: "[CARD]", patterns: ['\\d{4}-\\d{4}'], stream: hold}
"""

MONITOR = """
response:
  - {type: denylist, name: no-leaks, action: block, words: [classified], stream: monitor}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = write_policies(tmp_path_factory.mktemp("p"), GATEWAY + "open_mode: {policy: strict}\n", strict=STRICT)
    with running_gateway(root) as server:
        yield server


@pytest.fixture(scope="module")
def client(gw):
    return openai_client(gw)


def msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_non_streaming_completion_with_usage_and_gateway_info(client):
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=msg("Hello there."))
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello there."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens == 3
    assert raw.headers["x-gateway-request-id"].startswith("gw-")
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0
    info = completion.model_extra["gateway"]
    assert info["route"] == {"model": "echo", "upstream": "mock", "target": "echo", "attempts": 1}
    assert [v["check"] for v in info["verdicts"]] == ["off-limits", "secrets", "no-leaks", "cards"]


def test_streaming_with_include_usage_and_final_gateway_chunk(client):
    chunks = list(client.chat.completions.create(
        model="echo", messages=msg("One two. Three four."), stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two. Three four."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert any(c.usage and c.usage.completion_tokens > 0 for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].model_extra["gateway"]["route"]["upstream"] == "mock"


def test_extra_body_gateway_object_reaches_mock_and_is_not_forwarded(client):
    completion = client.chat.completions.create(
        model="context", messages=msg("What colour is the sky on Mars?"),
        extra_body={"gateway": {"context": [{"id": "mars", "text": "The sky on Mars is butterscotch. Dust is red."}],
                                "user_id": "u-1", "metadata": {"app": "test"}}},
    )
    assert completion.choices[0].message.content == "The sky on Mars is butterscotch. [mars]"
    info = completion.model_extra["gateway"]
    assert info["user_id"] == "u-1" and info["metadata"] == {"app": "test"}


def test_unknown_gateway_field_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=msg("x"), extra_body={"gateway": {"promt": {}}})
    assert "gateway.promt" in e.value.message


def test_embeddings_and_models_list(client):
    emb = client.embeddings.create(model="echo", input=["red apple", "red apple pie", "quantum flux"])
    a, b, c = (d.embedding for d in emb.data)
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731
    assert dot(a, b) > dot(a, c)
    ids = {m.id for m in client.models.list()}
    assert {"echo", "flaky", "limited"} <= ids


def test_unknown_model_is_404_listing_models(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=msg("x"))
    assert "gpt-9" in e.value.message and "echo" in e.value.message


def test_input_block_is_400_guardrail_violation(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=msg("Tell me about Nightingale"))
    body = e.value.body
    assert body["type"] == "guardrail_violation" and body["code"] == "denylist"
    assert "off-limits" in body["message"]


def test_input_redaction_reaches_upstream_redacted(client):
    completion = client.chat.completions.create(model="echo", messages=msg("my key sk-abcdefghijkl ok"))
    assert completion.choices[0].message.content == "my key [SECRET] ok"


def test_content_parts_are_checked_too(client):
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
             {"type": "text", "text": "nightingale"}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": parts}])


def test_output_block_non_streaming_withholds_content(client):
    completion = client.chat.completions.create(model="echo", messages=msg("This is classified material."))
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""
    verdict = {v["check"]: v for v in completion.model_extra["gateway"]["verdicts"]}["no-leaks"]
    assert verdict["action"] == "block"


def test_output_redaction_non_streaming(client):
    completion = client.chat.completions.create(model="echo", messages=msg("Card 1234-5678 expires."))
    assert completion.choices[0].message.content == "Card [CARD] expires."


def test_stream_hold_releases_checked_sentences_and_blocks_before_leak(client):
    chunks = list(client.chat.completions.create(
        model="echo", messages=msg("First sentence is fine. Second is classified info. Third."), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "First sentence is fine. "
    assert "classified" not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["content_filter"]
    assert chunks[-1].model_extra["gateway"]["verdicts"][-2]["action"] == "block"


def test_stream_hold_redacts(client):
    chunks = list(client.chat.completions.create(
        model="echo", messages=msg("Pay with 1234-5678 now. Thanks."), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Pay with [CARD] now. Thanks."


def test_stream_monitor_cuts_stream_at_violation(tmp_path):
    root = write_policies(tmp_path, GATEWAY, default=MONITOR)
    with running_gateway(root) as server:
        client = openai_client(server)
        words = "Fine start here. This is classified stuff. " + " ".join(f"w{i}" for i in range(200))
        chunks = list(client.chat.completions.create(
            model="echo", messages=msg(words), stream=True,
            extra_body={"gateway": {"mock": {"chunk_delay_ms": 2}}}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("Fine start here. This is classified")
        assert "w150" not in text  # the stream was cut, not delivered to the end
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
            "content_filter"]


def test_fallback_to_next_target_on_failing_upstream(client):
    completion = client.chat.completions.create(model="flaky", messages=msg("still here"))
    assert completion.choices[0].message.content == "still here"
    info = completion.model_extra["gateway"]
    assert info["route"]["upstream"] == "mock"
    assert [a["outcome"] for a in info["attempts"]] == ["http_500", "http_500", "ok"]


def test_all_targets_failing_is_502(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="dead", messages=msg("x"))
    assert e.value.status_code == 502
    assert "broken/echo: http_500" in e.value.message


def test_upstream_429_maps_to_rate_limit_error_with_retry_after(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="limited", messages=msg("x"))
    assert e.value.response.headers["retry-after"] == "7"


def test_retry_honours_retry_after(client):
    t0 = time.monotonic()
    completion = client.chat.completions.create(model="retry-after", messages=msg("patience"))
    elapsed = time.monotonic() - t0
    assert completion.choices[0].message.content == "patience"
    assert elapsed >= 1.0
    assert [a["outcome"] for a in completion.model_extra["gateway"]["attempts"]] == ["http_429", "ok"]


def test_upstream_timeout_is_504(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="slow", messages=msg("x"))
    assert e.value.status_code == 504


def test_upstream_garbage_is_502(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="garbage", messages=msg("x"))
    assert e.value.status_code == 502 and "not JSON" in e.value.message


def test_upstream_400_is_passed_to_client_without_fallback(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="rejects", messages=msg("x"))
    assert "bad param" in e.value.message


def test_stream_cut_midway_ends_with_error_event(client):
    stream = client.chat.completions.create(model="cut", messages=msg("a b c d e f g"), stream=True)
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got.append(chunk)
    # The mock sent 3 chunks (role, "a", " b") and died; held text is checked and released first.
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "a b"
    assert "before it finished" in e.value.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "echo"}', "`messages` is required"),
        (b'{"model": "echo", "messages": []}', "non-empty array"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "`model`"),
        (b'{"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "`stream`"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 0}', "`n`"),
    ],
)
def test_malformed_requests_get_clear_400(gw, body, fragment):
    r = post(gw, "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


def test_oversize_body_is_413(gw):
    r = post(gw, "/v1/chat/completions", json={"model": "echo", "messages": msg("x" * 20_000)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_unknown_route_is_json_404(gw):
    r = httpx.get(gw.url + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_healthz_and_readyz(gw):
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_oversize_chunked_body_without_length_is_413(gw):
    def body():
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    r = post(gw, "/v1/chat/completions", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_client_cannot_make_the_mock_read_a_file(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=msg("x"),
                                       extra_body={"gateway": {"mock": {"mode": "scripted", "script": "/etc/passwd"}}})
    assert "only be named in gateway.yaml" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=msg("x"), extra_body={"gateway": {"mock": {"laggy": 1}}})
    assert "gateway.mock.laggy" in e.value.message
