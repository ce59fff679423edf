"""Send the canary key and prompt (tests/canaries.py) through every kind of flow an in-process
gateway logs about - answers, streams, blocks, redactions, pii, bad input, upstream errors that
quote the key, rate limits, tabular and feedback errors. The session's logs are searched for them
at the end of the run (tests/conftest.py); here each flow only has to happen."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.canaries import KEY, PROMPT
from tests.helpers import running_gateway, running_mock_server, write_policies

POLICY = """
request:
  - {type: denylist, name: words, action: block, words: [forbiddenword]}
  - {type: pii, mode: regex}
response:
  - {type: denylist, name: out, action: block, words: [classified], stream: hold}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    os.environ["CANARY_UPSTREAM_KEY"] = KEY
    with running_mock_server() as mock:
        root = write_policies(tmp_path_factory.mktemp("canary"), f"""
upstreams:
  mock: {{type: mock}}
  remote: {{type: openai, base_url: "{mock.url}/v1", api_key_env: CANARY_UPSTREAM_KEY}}
models:
  echo: {{targets: [{{upstream: mock, model: echo}}]}}
  quotes-key:
    targets: [{{upstream: remote, model: "echo?fail_status=401&fail_message=Incorrect+API+key+provided:+{{{{api_key}}}}"}}]
    retries: 0
  remote-echo: {{targets: [{{upstream: remote, model: echo}}]}}
  cut: {{targets: [{{upstream: remote, model: "echo?cut_after=3"}}], retries: 1, backoff: {{base_s: 0.01}}}}
keys:
  - {{name: canary, sha256: "{__import__('hashlib').sha256(KEY.encode()).hexdigest()}", policy: p,
     limits: {{requests_per_minute: 30}}}}
tabular:
  t: {{url: "http://127.0.0.1:9/predict", timeout_s: 0.5, features: {{x: {{type: number}}}}}}
server: {{watch_interval_s: 0}}
""", p=POLICY)
        with running_gateway(root, ledger=root / "ledger.db") as server:
            yield server


def call(gw, path, body=None, key=KEY, **kw):
    return httpx.post(gw.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


def chat(model, text, **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_every_flow_with_the_canaries(gw):
    assert call(gw, "/v1/chat/completions", chat("echo", PROMPT)).status_code == 200
    assert call(gw, "/v1/chat/completions", chat("echo", PROMPT, stream=True)).status_code == 200
    assert call(gw, "/v1/chat/completions", chat("remote-echo", f"{PROMPT} key {KEY}", stream=True)).status_code == 200
    assert call(gw, "/v1/chat/completions", chat("echo", f"{PROMPT} forbiddenword")).status_code == 400
    assert call(gw, "/v1/chat/completions", chat("echo", f"{PROMPT} mail me at a.b@example.com")).status_code == 200
    assert call(gw, "/v1/chat/completions", chat("echo", f"{PROMPT} classified")).status_code in (200, 400, 403)
    assert call(gw, "/v1/chat/completions", chat("quotes-key", PROMPT)).status_code >= 400
    assert call(gw, "/v1/chat/completions", chat("cut", PROMPT, stream=True)).status_code == 200
    assert call(gw, "/v1/chat/completions", {"model": "echo", "messages": [{"role": [PROMPT]}]}).status_code == 400
    assert call(gw, "/v1/chat/completions", chat("echo", PROMPT, temperature=PROMPT)).status_code == 400
    assert call(gw, "/v1/chat/completions", chat("nope", PROMPT)).status_code == 404
    assert call(gw, "/v1/chat/completions", chat("echo", PROMPT), key=KEY + "x").status_code == 401
    assert call(gw, "/v1/embeddings", {"model": "echo", "input": PROMPT}).status_code in (200, 400, 404)
    assert call(gw, "/v1/tabular/t/predict", {"rows": [{"x": 1, "note": PROMPT}]}).status_code == 400
    assert call(gw, "/v1/tabular/t/predict", {"rows": [{"x": 1}]}).status_code == 502
    assert call(gw, "/v1/feedback", {"request_id": PROMPT, "metric": "m", "value": 1}).status_code in (400, 404)
    assert httpx.post(gw.url + "/v1/chat/completions", content=PROMPT.encode(), timeout=30,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"}).status_code == 415
    codes = {call(gw, "/v1/chat/completions", chat("echo", PROMPT)).status_code for _ in range(35)}
    assert 429 in codes  # the key's rpm limit was hit, with the canaries in the request
