"""HTTP fuzzing of every endpoint (issue #19): hypothesis generates request lines, headers and
bodies - random JSON, valid bodies with fields swapped for values of any type, raw bytes - and every
answer must be a deliberate one: no status >= 500 unless an upstream caused it (upstream_error),
an error body in the OpenAI shape for every 4xx, and no traceback or internal error in the logs.

Over 5,000 requests run (hypothesis examples x requests per example). Derandomized, so a failure
reproduces; set GATEWAY_FUZZ_EXAMPLES to run more."""

from __future__ import annotations

import json
import logging
import os
import string

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import running_gateway, write_policies

GATEWAY = """
upstreams:
  mock: {type: mock}
  nowhere: {type: openai, base_url: "http://127.0.0.1:9/v1", timeouts: {connect_s: 0.5}}
models:
  echo: {targets: [{upstream: mock, model: echo}]}
  fails: {targets: [{upstream: mock, model: "echo?fail_status=503"}], retries: 0}
  gone: {targets: [{upstream: nowhere, model: x}], retries: 0}
server: {watch_interval_s: 0, max_body_mb: 0.05}
open_mode: {policy: strict}
tabular:
  churn:
    url: http://127.0.0.1:9/predict
    timeout_s: 0.5
    features:
      tenure_months: {type: number, min: 0, max: 1200}
      plan: {type: category, values: [basic, pro]}
"""
STRICT = """
request:
  - {type: denylist, name: words, action: block, words: [forbidden]}
  - {type: denylist, name: keys, action: redact, patterns: ['sk-[a-z0-9]{8,}']}
response:
  - {type: denylist, name: out, action: block, words: [classified], stream: hold}
"""
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "1700"))
PER_EXAMPLE = 3  # requests sent per hypothesis example

ROUTES = [
    ("POST", "/v1/chat/completions"), ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"), ("GET", "/v1/responses/{name}"), ("GET", "/v1/responses/{name}/input_items"),
    ("DELETE", "/v1/responses/{name}"),
    ("POST", "/v1/embeddings"), ("GET", "/v1/models"),
    ("GET", "/v1/prompts"), ("GET", "/v1/prompts/{name}"), ("POST", "/v1/feedback"), ("GET", "/v1/experiments"),
    ("GET", "/v1/experiments/{name}"), ("POST", "/v1/tabular/{name}/predict"), ("POST", "/v1/tabular/{name}/feedback"),
    ("GET", "/v1/tabular/{name}/drift"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/admin/status"),
    ("GET", "/metrics"),
]
NAMES = st.sampled_from(["echo", "churn", "nope", "a b", "%00", "..%2f..", "x" * 300, "ü", "fails", "gone"])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)

MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"]),
                                 "content": st.one_of(st.text(max_size=60), json_values)})
BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=40), json_values)}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.text(max_size=8), "name": st.text(max_size=8),
                           "input": json_values}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": json_values, "content": json_values},
                          optional={"is_error": json_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["image", "document", "thinking", "bogus"]), "source": json_values}),
    json_values)
ANTHROPIC_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                           "content": st.one_of(st.text(max_size=60), st.lists(BLOCK, max_size=3))})
ANTHROPIC = dict(optional={"max_tokens": st.one_of(st.integers(-2, 50), json_values), "stream": st.booleans(),
                           "system": json_values, "tools": json_values, "tool_choice": json_values,
                           "stop_sequences": json_values, "metadata": json_values, "gateway": json_values,
                           "temperature": json_values, "thinking": json_values})
ITEM = st.one_of(
    MESSAGE,
    st.fixed_dictionaries({"type": st.just("message"), "role": st.sampled_from(["user", "assistant", "developer", "x"]),
                           "content": st.one_of(st.text(max_size=40), st.lists(st.fixed_dictionaries({
                               "type": st.sampled_from(["input_text", "output_text", "input_image", "input_file"]),
                               "text": json_values}), max_size=2))}),
    st.fixed_dictionaries({"type": st.just("function_call"), "call_id": json_values, "name": json_values,
                           "arguments": json_values}),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": json_values, "output": json_values}),
    json_values)
RESPONSES = dict(optional={"instructions": json_values, "stream": st.booleans(), "store": json_values,
                           "previous_response_id": st.one_of(json_values, st.just("resp_0")), "tools": json_values,
                           "tool_choice": json_values, "text": json_values, "reasoning": json_values,
                           "max_output_tokens": json_values, "metadata": json_values, "gateway": json_values,
                           "include": json_values, "truncation": json_values})
VALID = {
    "/v1/responses": st.fixed_dictionaries({"model": st.sampled_from(["echo", "fails", "gone", "nope"]),
                                            "input": st.one_of(st.text(max_size=40), st.lists(ITEM, max_size=3))},
                                           **RESPONSES),
    "/v1/messages": st.fixed_dictionaries({"model": st.sampled_from(["echo", "fails", "gone", "nope"]),
                                           "messages": st.lists(ANTHROPIC_MESSAGE, max_size=3)}, **ANTHROPIC),

    "/v1/chat/completions": st.fixed_dictionaries({
        "model": st.sampled_from(["echo", "fails", "gone", "nope"]),
        "messages": st.lists(MESSAGE, max_size=3)},
        optional={"stream": st.booleans(), "temperature": json_values, "max_tokens": json_values,
                  "stop": json_values, "tools": json_values, "n": json_values, "user": json_values,
                  "gateway": json_values, "stream_options": json_values, "response_format": json_values}),
    "/v1/embeddings": st.fixed_dictionaries({"model": st.sampled_from(["echo", "nope"]), "input": json_values},
                                           optional={"dimensions": json_values}),
    "/v1/feedback": st.fixed_dictionaries({}, optional={"request_id": json_values, "metric": json_values,
                                                        "value": json_values, "experiment": json_values}),
    "/v1/tabular/{name}/predict": st.fixed_dictionaries({"rows": st.one_of(json_values, st.lists(
        st.fixed_dictionaries({}, optional={"tenure_months": json_values, "plan": json_values}), max_size=3))}),
    "/v1/tabular/{name}/feedback": st.fixed_dictionaries({}, optional={"id": json_values, "label": json_values,
                                                                       "labels": json_values}),
}
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data", "", "application/vnd+json"])


@st.composite
def request(draw):
    method, path = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 19)) == 0:  # now and then a path or method nobody routes
        path = "/" + draw(st.text(string.ascii_letters + "/%.-_", max_size=30))
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    if "{name}" in path:
        path = path.replace("{name}", draw(NAMES))
    headers = {}
    if draw(st.booleans()):
        headers["Authorization"] = draw(st.sampled_from(["Bearer x", "Basic abc", "", "Bearer " + "k" * 500]))
    if draw(st.integers(0, 9)) == 0:
        headers["Origin"] = draw(st.sampled_from(["https://evil.example", "null", "http://127.0.0.1"]))
    body: bytes | None = None
    if method == "POST":
        kind = draw(st.sampled_from(["valid", "valid", "valid", "json", "bytes", "none"]))
        template = VALID["/v1/messages"] if path == "/v1/messages/count_tokens" else next(
            (v for k, v in VALID.items() if path.startswith(k.split("{")[0]) and path.endswith(k.rsplit("}", 1)[-1])),
            None)
        if kind == "valid" and template is not None:
            body = json.dumps(draw(template)).encode()
        elif kind in ("json", "valid"):
            body = json.dumps(draw(json_values)).encode()
        elif kind == "bytes":
            body = draw(st.binary(max_size=200))
        headers["Content-Type"] = draw(CONTENT_TYPES) if kind == "bytes" or draw(st.integers(0, 5)) == 0 \
            else "application/json"
    return method, path, headers, body


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = write_policies(tmp_path_factory.mktemp("fuzz"), GATEWAY, strict=STRICT)
    with running_gateway(root, ledger=root / "ledger.db") as server:
        yield server


class Tally:
    sent = 0
    by_status: dict[int, int] = {}


def check(r: httpx.Response, method: str, path: str) -> None:
    Tally.sent += 1
    Tally.by_status[r.status_code] = Tally.by_status.get(r.status_code, 0) + 1
    ctype = r.headers.get("content-type", "")
    if r.status_code >= 500:
        err = r.json()["error"]
        # only failures an upstream caused (the mock's 503, an unreachable upstream or model server);
        # /v1/messages answers in Anthropic's shape, with the gateway's own type beside it
        assert err.get("gateway_type", err["type"]) == "upstream_error", (method, path, r.status_code, r.text[:300])
    elif r.status_code >= 400 and method != "HEAD":
        assert "application/json" in ctype, (method, path, r.status_code, r.text[:200])
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and "Traceback" not in err["message"]
    elif "text/event-stream" in ctype:
        assert "Traceback" not in r.text


def test_fuzz_every_endpoint(gw, caplog):
    caplog.set_level(logging.INFO)
    client = httpx.Client(base_url=gw.url, timeout=30)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(request(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(requests):
        for method, path, headers, body in requests:
            r = client.request(method, path, headers=headers, content=body)
            check(r, method, path)

    try:
        run()
    finally:
        client.close()
    bad = [rec for rec in caplog.records
           if rec.exc_info or "Traceback" in rec.getMessage() or "internal error" in rec.getMessage()]
    assert not bad, [rec.getMessage() for rec in bad[:5]]
    print(f"fuzz: {Tally.sent} requests, by status {dict(sorted(Tally.by_status.items()))}")
    assert Tally.sent >= 5000 or EXAMPLES * PER_EXAMPLE < 5000
