"""Streams whose upstream fails: held until content so early faults are plain retries, resumed by
replay after content reached the client, and never silently truncated (issue #19, item 2).

The upstream is the mock model served over real HTTP (`gateway mock-server`'s app), so a cut is a
closed TCP connection, as from a real upstream dying mid-answer."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.helpers import ledger_row as _ledger_row, running_gateway, running_mock_server, write_policies

TEXT = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with running_mock_server() as mock:
        models = {
            # cut_times=1: only the first attempt breaks
            "role-only": "echo?cut_after=1&cut_times=1",           # after the role chunk: nothing delivered yet
            "mid": "echo?cut_after=4&cut_times=1",                 # after "one two three"
            "after-finish": "echo?cut_after=10&cut_times=1",       # finish sent; usage and [DONE] lost
            "diverging": "echo?cut_after=4&cut_times=1&vary=true",  # the replay says something else
            "always": "echo?cut_after=4",                          # every attempt breaks
            "early-always": "echo?cut_after=1",
        }
        routes = "\n".join(f'  {name}: {{targets: [{{upstream: remote, model: "{m}"}}], retries: 2, '
                           'backoff: {base_s: 0.01}}' for name, m in models.items())
        root = write_policies(tmp_path_factory.mktemp("p"), f"""
upstreams:
  remote: {{type: openai, base_url: "{mock.url}/v1", timeouts: {{connect_s: 2, read_s: 5}}}}
models:
{routes}
server: {{watch_interval_s: 0}}
""")
        ledger = root / "ledger.db"
        with running_gateway(root, ledger=ledger) as server:
            server.ledger = ledger
            yield server


def stream(gw, model: str) -> tuple[str, list[dict], int]:
    """(text the client got, every event, number of finish reasons)."""
    events = []
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": TEXT}], "stream": True}) as r:
        assert r.status_code == 200
        rid = r.headers["x-gateway-request-id"]
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    text = "".join((c.get("delta") or {}).get("content") or "" for e in events for c in e.get("choices") or ())
    finishes = sum(1 for e in events for c in e.get("choices") or () if c.get("finish_reason"))
    gw.last_id = rid
    return text, events, finishes


def ledger_row(gw, rid: str) -> dict:
    return _ledger_row(gw.ledger, rid)


def test_a_fault_before_any_content_is_retried_invisibly(gw):
    text, events, finishes = stream(gw, "role-only")
    assert text == TEXT and finishes == 1 and not any("error" in e for e in events)
    row = ledger_row(gw, gw.last_id)
    assert row["outcome"] == "ok" and row["attempts"] == 2


@pytest.mark.parametrize("model", ["mid", "after-finish"])
def test_a_fault_after_content_is_resumed_by_replay_without_duplicates(gw, model):
    text, events, finishes = stream(gw, model)
    assert text == TEXT, text  # every word once, in order
    assert finishes == 1 and not any("error" in e for e in events)
    ids = {e["id"] for e in events if "id" in e}
    assert len(ids) == 1  # one stream to the client, though two upstream streams fed it
    row = ledger_row(gw, gw.last_id)
    assert row["outcome"] == "ok" and row["stream"] == 1 and row["output_tokens"] > 0


def test_a_replay_that_says_something_else_ends_with_an_error_event(gw):
    text, events, finishes = stream(gw, "diverging")
    assert text and TEXT not in text and text.startswith("Attempt 1:")  # what was delivered stays as it was
    assert events[-1]["error"]["code"] == "stream_cut" and "said something else" in events[-1]["error"]["message"]
    assert ledger_row(gw, gw.last_id)["outcome"] == "failed"


@pytest.mark.parametrize("model", ["always", "early-always"])
def test_when_every_attempt_breaks_the_stream_ends_with_an_error_not_silence(gw, model):
    started = time.monotonic()
    if model == "early-always":  # nothing was ever delivered: an ordinary failed request (502)
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                       json={"model": model, "messages": [{"role": "user", "content": TEXT}], "stream": True})
        assert r.status_code == 502 and "stream" in r.json()["error"]["message"]
        return
    text, events, finishes = stream(gw, model)
    assert TEXT.startswith(text) and finishes == 0
    assert events[-1]["error"]["code"] == "stream_cut"
    row = ledger_row(gw, gw.last_id)
    assert row["outcome"] == "failed" and row["attempts"] >= 3
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """The same faults behind a policy whose response check holds sentences (stream: hold) and one
    that restores pseudonymized PII: a replay must feed them the missing text only, once."""
    with running_mock_server() as mock:
        root = write_policies(tmp_path_factory.mktemp("g"), f"""
upstreams:
  remote: {{type: openai, base_url: "{mock.url}/v1", timeouts: {{connect_s: 2, read_s: 5}}}}
models:
  mid: {{targets: [{{upstream: remote, model: "echo?cut_after=6&cut_times=1"}}], retries: 2, backoff: {{base_s: 0.01}}}}
open_mode: {{policy: held}}
server: {{watch_interval_s: 0}}
""", held="""
request:
  - {type: pii, mode: regex, entities: {EMAIL_ADDRESS: pseudonymize}}
response:
  - {type: denylist, name: no-secrets, action: block, words: [classified], stream: hold}
""")
        with running_gateway(root) as server:
            yield server


def test_a_resumed_stream_passes_hold_checks_and_restores_pseudonyms_once(guarded):
    words = "Mail ann@example.com now. The second sentence follows here. And a third one."
    events = []
    with httpx.stream("POST", guarded.url + "/v1/chat/completions", timeout=30,
                      json={"model": "mid", "messages": [{"role": "user", "content": words}], "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    text = "".join((c.get("delta") or {}).get("content") or "" for e in events for c in e.get("choices") or ())
    assert text == words, text  # the e-mail restored, every sentence once
    assert not any("error" in e for e in events)
    attempts = events[-1]["gateway"]["attempts"]
    assert any("mid-stream" in a["outcome"] for a in attempts)
