"""The `bedrock` upstream type against the mock's Converse wire format: SigV4 signatures verified by
the mock, bearer API keys, start-up problems for a missing region or credential, guardrail stops as
content_filter, cache usage, throttling, and the binary event stream (including corrupt frames)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from gateway.errors import PolicyError
from gateway.errors import InvalidRequest
from gateway.runtime import load_runtime
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.bedrock import EventStreamReader
from gateway.upstreams.bedrock_wire import to_converse
from gateway.upstreams.mock_bedrock import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY, event, frame
from tests.helpers import ledger_row, openai_client, running_gateway, running_mock_server, write_policies


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("B_ID", MOCK_ACCESS_KEY_ID)
    mp.setenv("B_SECRET", MOCK_SECRET_ACCESS_KEY)
    mp.setenv("B_WRONG", "not-the-secret")
    mp.setenv("B_TOKEN", "bedrock-api-key-abc")
    with running_mock_server() as mock:
        root = write_policies(tmp_path_factory.mktemp("p"), f"""
        upstreams:
          aws: {{type: bedrock, region: eu-west-1, endpoint_url: "{mock.url}", access_key_id_env: B_ID,
                secret_access_key_env: B_SECRET}}
          aws-wrong: {{type: bedrock, region: eu-west-1, endpoint_url: "{mock.url}", access_key_id_env: B_ID,
                      secret_access_key_env: B_WRONG}}
          aws-cache: {{type: bedrock, region: eu-west-1, endpoint_url: "{mock.url}", access_key_id_env: B_ID,
                      secret_access_key_env: B_SECRET, prompt_caching: auto}}
          aws-key: {{type: bedrock, region: eu-west-1, endpoint_url: "{mock.url}", auth: bearer,
                    bearer_token_env: B_TOKEN}}
        models:
          b: {{targets: [{{upstream: aws, model: "echo"}}]}}
          b-arn: {{targets: [{{upstream: aws, model: "fixed?text=arn:aws:bedrock:eu-west-1:1:inference-profile/eu.a"}}]}}
          b-cached: {{targets: [{{upstream: aws, model: "echo?cache_read_tokens=4&cache_write_tokens=2"}}]}}
          b-guard: {{targets: [{{upstream: aws, model: "echo?blocked=answer"}}]}}
          b-throttled: {{targets: [{{upstream: aws, model: "echo?fail_status=429&fail_times=1"}}], retries: 1,
                        backoff: {{base_s: 0.01, max_s: 0.01}}}}
          b-wrong: {{targets: [{{upstream: aws-wrong, model: echo}}], retries: 0}}
          b-key: {{targets: [{{upstream: aws-key, model: echo}}]}}
          b-cache: {{targets: [{{upstream: aws-cache, model: echo}}]}}
        server: {{watch_interval_s: 0}}
        """)
        with running_gateway(root, ledger=root / "ledger.db") as server:
            server.ledger = root / "ledger.db"
            yield server
    mp.undo()


def test_the_mock_wire_format_parses_with_botocores_own_bedrock_runtime_client():
    """AWS's published service model and parsers (botocore) read the mock's JSON and event stream,
    and the mock accepts botocore's own signatures: the mock is faithful to what the gateway meets."""
    import botocore.exceptions
    import botocore.session

    with running_mock_server() as mock:
        c = botocore.session.get_session().create_client(
            "bedrock-runtime", region_name="us-east-1", endpoint_url=mock.url, aws_access_key_id=MOCK_ACCESS_KEY_ID,
            aws_secret_access_key=MOCK_SECRET_ACCESS_KEY)
        r = c.converse(modelId="echo?cache_read_tokens=1", messages=[{"role": "user", "content": [{"text": "hi there"}]}])
        assert r["output"]["message"]["content"] == [{"text": "hi there"}] and r["stopReason"] == "end_turn"
        assert r["usage"]["cacheReadInputTokens"] == 1
        stream = c.converse_stream(modelId="tool", messages=[{"role": "user", "content": [{"text": "Oslo"}]}],
                                   toolConfig={"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {
                                       "type": "object", "properties": {"city": {"type": "string"}}}}}}]})
        events = [next(iter(e)) for e in stream["stream"]]
        assert events[0] == "messageStart" and events[-2:] == ["messageStop", "metadata"]
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.converse(modelId="echo?fail_status=400", messages=[{"role": "user", "content": [{"text": "x"}]}])
        assert e.value.response["Error"]["Code"] == "ValidationException"


def chat(gw, model: str, text: str = "one two three", **kw):
    return openai_client(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def test_signed_requests_are_accepted_and_a_wrong_secret_is_refused(gw):
    assert chat(gw, "b").choices[0].message.content == "one two three"
    # ':' and '/' in the model id (as in an ARN or inference profile) are encoded in the signed path
    assert chat(gw, "b-arn").choices[0].message.content == "arn:aws:bedrock:eu-west-1:1:inference-profile/eu.a"
    assert chat(gw, "b-key").choices[0].message.content == "one two three"
    assert chat(gw, "b-cache").choices[0].message.content == "one two three"  # cache points accepted
    with pytest.raises(openai.APIStatusError) as e:
        chat(gw, "b-wrong")
    # the gateway's own credentials are wrong, not the client's request: 502, with the upstream's reason
    assert e.value.status_code == 502 and "http_403" in e.value.message and "signature" in e.value.message


def test_streams_in_the_binary_event_stream_framing(gw):
    chunks = list(chat(gw, "b-cached", stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "one two three"
    usage = next(ch.usage for ch in chunks if ch.usage)
    assert usage.prompt_tokens_details.cached_tokens == 4 and usage.completion_tokens == 3


def test_usage_with_cache_reads_and_writes_reaches_the_ledger(gw):
    r = chat(gw, "b-cached")
    row = ledger_row(gw.ledger, r.model_extra["gateway"]["request_id"])
    assert (row["cached_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (4, 2, 3)
    assert row["input_tokens"] == r.usage.prompt_tokens and row["upstream"] == "aws"


def test_guardrail_stops_are_content_filter_and_throttling_is_retried(gw):
    r = chat(gw, "b-guard", "one two three four")
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == "one two"
    info = chat(gw, "b-throttled").model_extra["gateway"]
    assert [a["outcome"] for a in info["attempts"]] == ["http_429", "ok"]


def test_missing_region_or_credentials_are_start_up_problems(tmp_path, monkeypatch):
    for env in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    root = write_policies(tmp_path, """
    upstreams: {aws: {type: bedrock}}
    models: {b: {targets: [{upstream: aws, model: m}]}}
    """)
    with pytest.raises(PolicyError) as e:
        load_runtime(root)
    text = "\n".join(e.value.problems)
    assert "no region" in text and "AWS_ACCESS_KEY_ID is not set" in text and "gateway.yaml:" in text


def test_converse_translation_refuses_what_it_cannot_send():
    out = to_converse({"model": "m", "max_tokens": 9, "top_k": 5, "tool_choice": "required", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]})
    assert out["system"] == [{"text": "s"}] and out["inferenceConfig"] == {"maxTokens": 9}
    assert out["additionalModelRequestFields"] == {"top_k": 5} and out["toolConfig"]["toolChoice"] == {"any": {}}
    cached = to_converse({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]},
                         cache=True)
    assert cached["system"][-1] == {"cachePoint": {"type": "default"}}
    assert cached["messages"][-1]["content"] == [{"text": "q"}, {"cachePoint": {"type": "default"}}]
    for bad in ({"seed": 1}, {"response_format": {"type": "json_object"}}, {"n": 2}):
        with pytest.raises(InvalidRequest):
            to_converse({"model": "m", "messages": [{"role": "user", "content": "q"}], **bad})


def test_event_stream_reader_rejects_a_corrupt_frame_and_a_cut_message():
    class Content:
        def __init__(self, chunks):
            self.chunks = list(chunks)

        async def readany(self):
            return self.chunks.pop(0) if self.chunks else b""

    class Resp:
        def __init__(self, chunks):
            self.content = Content(chunks)

        def release(self):
            pass

        def close(self):
            pass

    async def read(chunks):
        reader = EventStreamReader(Resp(chunks), asyncio.Semaphore(1), lambda s: s)
        return [item async for item in reader]

    good = event("messageStart", {"role": "assistant"})
    whole = asyncio.run(read([good[:5], good[5:]]))  # a message split across reads
    assert whole and b'"_event":"messageStart"' in whole[0]
    corrupt = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(UpstreamError) as e:
        asyncio.run(read([corrupt]))
    assert e.value.kind == "bad_response"
    with pytest.raises(UpstreamError) as e:
        asyncio.run(read([good, good[:10]]))
    assert e.value.kind == "stream_cut"
    exc = frame({":message-type": "exception", ":exception-type": "throttlingException",
                 ":content-type": "application/json"}, b'{"message": "slow down"}')
    (item,) = asyncio.run(read([exc]))
    assert b'"exception":"throttlingException"' in item and b"slow down" in item
