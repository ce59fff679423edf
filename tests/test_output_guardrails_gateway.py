"""Output guardrails end to end: faithfulness / citations on answers and on streams (hold, monitor),
the LLM judge through the gateway's routing and metering, and failures contained per on_error."""

from __future__ import annotations

import sqlite3
import time

import openai
import pytest

from tests.helpers import openai_client, running_gateway, write_policies

DOC = ("The Eiffel Tower is 330 metres tall. It was completed in 1889 for the World's Fair in Paris. "
       "Gustave Eiffel's company designed and built it.")
LIE = ("The Eiffel Tower is 330 metres tall. It was painted gold by Napoleon in 1920. "
       "Gustave Eiffel's company designed and built it.")

GATEWAY = f"""
upstreams:
  mock: {{type: mock}}
  liar: {{type: mock, behaviour: {{mode: fixed, text: "{LIE}"}}}}
  judge-ok: {{type: mock, behaviour: {{mode: fixed, text: '{{"supported": [0, 2], "unsupported": [1], "confidence": 0.9}}'}}}}
  judge-bad: {{type: mock, behaviour: {{mode: fixed, text: "Looks fine to me!"}}}}
  judge-slow: {{type: mock, behaviour: {{hang: true}}}}
models:
  rag: {{targets: [{{upstream: mock, model: context}}]}}
  liar: {{targets: [{{upstream: liar, model: fixed}}]}}
  liar-cut: {{targets: [{{upstream: liar, model: "fixed?cut_after=9"}}]}}
  liar-slow: {{targets: [{{upstream: liar, model: "fixed?chunk_delay_ms=40"}}]}}
  judge-ok: {{targets: [{{upstream: judge-ok, model: fixed}}]}}
  judge-bad: {{targets: [{{upstream: judge-bad, model: fixed}}]}}
  judge-slow: {{targets: [{{upstream: judge-slow, model: fixed}}], timeout_s: 30}}
keys:
  - {{name: flag, env: OG_FLAG, policy: flag}}
  - {{name: hold, env: OG_HOLD, policy: hold}}
  - {{name: monitor, env: OG_MONITOR, policy: monitor}}
  - {{name: judged, env: OG_JUDGED, policy: judged}}
  - {{name: judgebad, env: OG_JUDGEBAD, policy: judgebad}}
  - {{name: judgeslow, env: OG_JUDGESLOW, policy: judgeslow}}
server: {{watch_interval_s: 0}}
"""
POLICIES = {
    "flag": "response:\n  - {type: faithfulness, action: flag}\n  - {type: citations}\n",
    "hold": "response:\n  - {type: faithfulness, action: block, stream: hold}\n",
    "monitor": "response:\n  - {type: faithfulness, action: block, stream: monitor}\n",
    "judged": "response:\n  - {type: faithfulness, action: flag, judge: {model: judge-ok, mode: only}}\n",
    "judgebad": "response:\n  - {type: faithfulness, on_error: open, judge: {model: judge-bad, mode: only}}\n",
    "judgeslow": "response:\n  - {type: faithfulness, on_error: closed, timeout_ms: 500, judge: {model: judge-slow, mode: only}}\n",
}
KEYS = {name: f"sk-og-{name}" for name in POLICIES}
CTX = {"gateway": {"context": [{"id": "eiffel", "text": DOC}]}}
Q = [{"role": "user", "content": "How tall is the Eiffel Tower?"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for name, key in KEYS.items():
        mp.setenv(f"OG_{name.upper()}", key)
    root = write_policies(tmp_path_factory.mktemp("og"), GATEWAY, **POLICIES)
    with running_gateway(root, ledger=root / "ledger.db") as server:
        server.ledger = root / "ledger.db"
        yield server
    mp.undo()


def client(gw, policy):
    return openai_client(gw, api_key=KEYS[policy])


def verdict(info, check_type):
    return next(v for v in info["verdicts"] if v["type"] == check_type)


def test_supported_rag_answer_with_citation_passes(gw):
    out = client(gw, "flag").chat.completions.create(model="rag", messages=Q, extra_body=CTX)
    assert out.choices[0].message.content.endswith("[eiffel]")
    info = out.model_extra["gateway"]
    assert verdict(info, "faithfulness")["action"] == "allow"
    assert verdict(info, "citations")["action"] == "allow"


def test_unsupported_claims_are_flagged_with_positions(gw):
    out = client(gw, "flag").chat.completions.create(model="liar", messages=Q, extra_body=CTX)
    v = verdict(out.model_extra["gateway"], "faithfulness")
    assert v["action"] == "flag" and [u["index"] for u in v["details"]["unsupported"]] == [1]
    assert out.choices[0].message.content == LIE  # flag annotates only


def test_no_context_is_reported_as_skipped(gw):
    out = client(gw, "flag").chat.completions.create(model="liar", messages=Q)
    v = verdict(out.model_extra["gateway"], "faithfulness")
    assert v["action"] == "allow" and v["details"]["skipped"] == "no context"


def stream_text(stream):
    text, finish, final = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        elif chunk.model_extra.get("gateway"):
            final = chunk.model_extra["gateway"]
    return text, finish, final


def test_hold_mode_releases_supported_sentences_and_stops_before_the_bad_one(gw):
    stream = client(gw, "hold").chat.completions.create(model="liar", messages=Q, extra_body=CTX, stream=True)
    text, finish, final = stream_text(stream)
    assert text.strip() == "The Eiffel Tower is 330 metres tall."
    assert "Napoleon" not in text and finish == "content_filter"
    assert verdict(final, "faithfulness")["action"] == "block"


def test_monitor_mode_cuts_the_stream_at_the_violation(gw):
    # One word every 40 ms, like a real model: text flows at once, the bad sentence is checked as soon
    # as it completes, and the stream stops there (the upstream request is cancelled).
    stream = client(gw, "monitor").chat.completions.create(model="liar-slow", messages=Q, extra_body=CTX, stream=True)
    text, finish, final = stream_text(stream)
    assert finish == "content_filter" and verdict(final, "faithfulness")["action"] == "block"
    assert "Napoleon" in text and "designed and built" not in text


def test_non_streamed_block_withholds_the_answer(gw):
    out = client(gw, "hold").chat.completions.create(model="liar", messages=Q, extra_body=CTX)
    assert out.choices[0].finish_reason == "content_filter" and out.choices[0].message.content == ""


def test_stream_cut_mid_sentence_by_the_upstream_ends_with_an_error_event(gw):
    stream = client(gw, "hold").chat.completions.create(model="liar-cut", messages=Q, extra_body=CTX, stream=True)
    with pytest.raises(openai.APIError):
        stream_text(stream)


def test_judge_is_called_through_the_gateway_and_metered(gw):
    out = client(gw, "judged").chat.completions.create(model="liar", messages=Q, extra_body=CTX)
    v = verdict(out.model_extra["gateway"], "faithfulness")
    judge = v["details"]["judge"]
    assert v["action"] == "flag" and judge["confidence"] == 0.9 and v["details"]["unsupported"][0]["index"] == 1
    call = judge["call"]
    assert call["status"] == 200 and call["usage"]["input_tokens"] > 50
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        try:  # the ledger file exists a moment before its tables
            with sqlite3.connect(gw.ledger) as db:
                row = db.execute("SELECT key, model, input_tokens FROM requests WHERE request_id = ?",
                                 (call["request_id"],)).fetchone()
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    assert row == ("judged", "judge-ok", call["usage"]["input_tokens"])


def test_judge_returning_invalid_json_is_contained_per_on_error(gw):
    out = client(gw, "judgebad").chat.completions.create(model="liar", messages=Q, extra_body=CTX)
    v = verdict(out.model_extra["gateway"], "faithfulness")
    assert v["status"] == "error" and v["error"] == "JudgeError" and v["action"] == "allow"
    assert out.choices[0].message.content == LIE


def test_judge_timeout_fails_closed_when_the_policy_says_so(gw):
    out = client(gw, "judgeslow").chat.completions.create(model="liar", messages=Q, extra_body=CTX)
    v = verdict(out.model_extra["gateway"], "faithfulness")
    assert v["status"] == "timeout" and v["action"] == "block"
    assert out.choices[0].finish_reason == "content_filter"


def test_hold_mode_on_translated_streams_responses_and_messages(gw):
    """The same hold check on a stream re-rendered for a Responses and for a Messages client."""
    import anthropic

    with client(gw, "hold").responses.stream(model="liar", input=Q[-1]["content"], extra_body=CTX) as s:
        events = list(s)
    final = events[-1].response
    assert events[-1].type == "response.incomplete" and final.incomplete_details.reason == "content_filter"
    assert final.output_text.strip() == "The Eiffel Tower is 330 metres tall." and "Napoleon" not in final.output_text
    assert verdict(final.model_extra["gateway"], "faithfulness")["action"] == "block"
    c = anthropic.Anthropic(base_url=gw.url, api_key=KEYS["hold"], max_retries=0)
    with c.messages.stream(model="liar", max_tokens=200, messages=[Q[-1]], extra_body=CTX) as s:
        message = s.get_final_message()
    assert message.stop_reason == "refusal" and "Napoleon" not in message.content[0].text
    assert message.content[0].text.strip() == "The Eiffel Tower is 330 metres tall."
