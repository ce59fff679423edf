"""Prompts through the gateway: extra_body references, defaults, records, /v1/prompts, reload."""

from __future__ import annotations

import sqlite3
import time

import httpx
import openai
import pytest

from tests.helpers import openai_client, running_gateway, write_policies
from tests.prompts.helpers import make_prompts, prompts_cli

GW = """
upstreams: {mock: {type: mock}}
models:
  mock-model: {targets: [{upstream: mock, model: echo}]}
  other: {targets: [{upstream: mock, model: "fixed?text=other"}]}
server: {watch_interval_s: 0.1}
"""


@pytest.fixture()
def env(tmp_path):
    prompts = make_prompts(tmp_path / "prompts")
    assert prompts_cli(prompts, "promote", "support", "1").returncode == 0
    policies = write_policies(tmp_path / "policies", GW)
    with running_gateway(policies, prompts=prompts, ledger=tmp_path / "ledger.db") as gw:
        yield gw, prompts, tmp_path / "ledger.db"


def ask(client, **prompt):
    return client.chat.completions.create(model="prompt", messages=[], extra_body={"gateway": {"prompt": prompt}})


def test_prompt_by_label_renders_applies_defaults_and_is_recorded(env):
    gw, _, ledger = env
    out = ask(openai_client(gw), name="support", variables={"question": "Where is my parcel?"})
    assert out.choices[0].message.content == "Q: Where is my parcel?"  # echo of the rendered user message
    record = out.model_extra["gateway"]["prompt"]
    assert (record["name"], record["version"], record["label"]) == ("support", 1, "production")
    assert out.model_extra["gateway"]["route"]["model"] == "mock-model"  # the prompt's default model
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        try:
            with sqlite3.connect(ledger) as conn:
                row = conn.execute("SELECT prompt_name, prompt_version, prompt_hash FROM requests").fetchone()
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    assert row == ("support", 1, record["hash"])


def test_client_messages_follow_the_prompt_and_request_overrides_win(env):
    gw, _, _ = env
    client = openai_client(gw)
    out = client.chat.completions.create(
        model="other", messages=[{"role": "user", "content": "follow-up"}], temperature=0.9,
        extra_body={"gateway": {"prompt": {"name": "support", "version": 1, "variables": {"question": "q"}}}})
    assert out.choices[0].message.content == "other"
    assert out.model_extra["gateway"]["route"]["model"] == "other"
    # echo shows the last user message: the client's own, appended after the prompt's
    out = client.chat.completions.create(
        model="prompt", messages=[{"role": "user", "content": "follow-up"}],
        extra_body={"gateway": {"prompt": {"name": "support", "variables": {"question": "q"}}}})
    assert out.choices[0].message.content == "follow-up"


def test_prompt_errors(env):
    gw, _, _ = env
    client = openai_client(gw)
    with pytest.raises(openai.NotFoundError, match="Prompts: support"):
        ask(client, name="nope")
    with pytest.raises(openai.NotFoundError, match="Labels: production -> v1"):
        ask(client, name="support", label="staging", variables={"question": "q"})
    with pytest.raises(openai.BadRequestError, match="missing: question"):
        ask(client, name="support")
    with pytest.raises(openai.BadRequestError, match="version` or `label"):
        ask(client, name="support", version=1, label="production")


def test_streaming_with_a_prompt(env):
    gw, _, _ = env
    chunks = list(openai_client(gw).chat.completions.create(
        model="prompt", messages=[], stream=True,
        extra_body={"gateway": {"prompt": {"name": "support", "variables": {"question": "stream me"}}}}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Q: stream me"
    assert chunks[-1].model_extra["gateway"]["prompt"]["version"] == 1


def test_prompts_api(env):
    gw, _, _ = env
    listing = httpx.get(gw.url + "/v1/prompts").json()["data"]
    assert listing == [{"name": "support", "labels": {"production": 1}, "versions": [1],
                        "description": "Answer a support question."}]
    detail = httpx.get(gw.url + "/v1/prompts/support").json()
    assert detail["versions"][0]["published"] is True and "question" in detail["versions"][0]["variables"]
    missing = httpx.get(gw.url + "/v1/prompts/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "prompt_not_found"


def test_promote_and_rollback_apply_to_a_running_gateway(env):
    gw, prompts, _ = env
    client = openai_client(gw)
    assert prompts_cli(prompts, "new", "support").returncode == 0
    v2 = prompts / "support" / "v2.yaml"
    v2.write_text(v2.read_text().replace("Q: {{ question }}", "Question v2: {{ question }}"))
    assert prompts_cli(prompts, "promote", "support", "2").returncode == 0

    def answer():
        return ask(client, name="support", variables={"question": "x"}).choices[0].message.content

    deadline = time.monotonic() + 10
    while answer() != "Question v2: x" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer() == "Question v2: x"
    assert prompts_cli(prompts, "rollback", "support").returncode == 0
    deadline = time.monotonic() + 10
    while answer() != "Q: x" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer() == "Q: x"
