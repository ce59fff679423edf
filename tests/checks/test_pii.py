"""The `pii` check on the real presidio + spaCy engine: actions, thresholds, allow-lists, custom
recognizers, all user-controlled fields, chunking, and the no-values-in-verdicts rule."""

import asyncio

import pytest
from pydantic import ValidationError

from gateway.checks.base import Action, OutputSegment
from gateway.checks.pii import PSEUDONYMS, Pii, PiiParams
from gateway.exchange import Exchange
from gateway.pii.anonymize import Pseudonyms, Restorer
from gateway.models.chunking import chunks
from gateway.pii.engine import PiiEngine


def _ex(*contents, role="user"):
    return Exchange("chat.completions", {"messages": [{"role": role, "content": c} for c in contents]})


def run(coro):
    return asyncio.run(coro)


def check(**params):
    return Pii(PiiParams(**params))


def test_redact_mask_hash_and_block_per_entity_type():
    c = check(entities={"EMAIL_ADDRESS": "redact", "CREDIT_CARD": {"action": "mask"}, "PHONE_NUMBER": "hash"},
              mask_keep_last=4)
    ex = _ex("Mail jane.doe@example.com, card 4111 1111 1111 1111, phone +1 415-555-0132")
    v = run(c.request(ex))
    assert v.action is Action.REDACT
    sent = v.rewrites[("messages", 0, "content")]
    assert "<EMAIL_ADDRESS>" in sent and "jane.doe" not in sent
    assert "**** **** **** 1111" in sent
    assert "<PHONE_NUMBER:" in sent and "555-0132" not in sent
    blocked = run(check(entities={"US_SSN": "block"}).request(_ex("my social security number is 536-90-4399")))
    assert blocked.action is Action.BLOCK


def test_verdict_records_types_counts_positions_never_values():
    v = run(check().request(_ex("Email me at jane.doe@example.com or call Jane Doe")))
    text = repr(v.details) + v.reason
    assert "jane.doe" not in text.lower() and "Jane Doe" not in text
    ent = v.details["entities"][0]
    assert set(ent) == {"type", "start", "end", "score", "field", "action"}
    assert v.details["counts"]["EMAIL_ADDRESS"] == 1


def test_pseudonyms_are_consistent_within_a_request_and_skip_user_typed_placeholders():
    c = check(entities={"PERSON": "pseudonymize", "EMAIL_ADDRESS": "pseudonymize"})
    ex = _ex("Dr. Maria Lopez wrote to <PERSON_1>.", "Please ask Dr. Maria Lopez again, mail maria@lopez.org")
    v = run(c.request(ex))
    first, second = v.rewrites[("messages", 0, "content")], v.rewrites[("messages", 1, "content")]
    ph = ex.state[PSEUDONYMS]
    # the user typed <PERSON_1> themselves: it is left alone and never used as a pseudonym
    assert "<PERSON_1>" in first and ph.back.get("<PERSON_1>") is None
    assert "<PERSON_2>" in first and "<PERSON_2>" in second
    assert ph.restore("Hello <PERSON_2>, and <PERSON_1>") == "Hello Dr. Maria Lopez, and <PERSON_1>"


def test_restorer_handles_placeholders_split_across_chunks():
    p = Pseudonyms()
    p.placeholder("PERSON", "Ada Lovelace")
    r = Restorer(p)
    pieces = ["Dear <PER", "SON_", "1>, thanks", " <", "b>bold</b> x<"]
    out = "".join(r.feed(0, piece) for piece in pieces) + r.flush(0)
    assert out == "Dear Ada Lovelace, thanks <b>bold</b> x<"


def test_thresholds_and_allow_lists():
    text = "Write to support@acme.com or bob@example.org"
    v = run(check(entities={"EMAIL_ADDRESS": "redact"}, allow=["SUPPORT@acme.com"]).request(_ex(text)))
    assert v.rewrites[("messages", 0, "content")] == "Write to support@acme.com or <EMAIL_ADDRESS>"
    v = run(check(entities={"EMAIL_ADDRESS": "redact"}, allow_patterns=[r".*@acme\.com"]).request(_ex(text)))
    assert "support@acme.com" in v.rewrites[("messages", 0, "content")]
    # a threshold above what the recognizer scores lets the entity through
    v = run(check(entities={"EMAIL_ADDRESS": {"action": "block", "threshold": 1.0}}).request(_ex("x jane@ex.com")))
    assert v.action is Action.BLOCK  # email scores 1.0
    v = run(check(entities={"PERSON": {"action": "block", "threshold": 0.99}}).request(_ex("I met John Smith")))
    assert v.action is Action.ALLOW


def test_custom_regex_and_denylist_recognizers():
    c = check(entities={"EMPLOYEE_ID": "redact", "PROJECT": "block"},
              recognizers=[{"entity": "EMPLOYEE_ID", "patterns": [r"EMP-\d{6}"]},
                           {"entity": "PROJECT", "words": ["nightingale"]}])
    v = run(c.request(_ex("Badge EMP-123456 please")))
    assert v.rewrites[("messages", 0, "content")] == "Badge <EMPLOYEE_ID> please"
    assert run(c.request(_ex("status of Project NIGHTINGALE?"))).action is Action.BLOCK


def test_checks_content_parts_names_and_tool_results_but_not_images():
    body = {"messages": [
        {"role": "user", "name": "alice_smith", "content": [
            {"type": "text", "text": "mail bob@example.org"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "customer email: carol@example.net"},
    ]}
    ex = Exchange("chat.completions", body)
    v = run(check(entities={"EMAIL_ADDRESS": "redact"}).request(ex))
    assert v.rewrites[("messages", 0, "content", 0, "text")] == "mail <EMAIL_ADDRESS>"
    assert v.rewrites[("messages", 1, "content")] == "customer email: <EMAIL_ADDRESS>"
    assert body["messages"][0]["content"][1]["image_url"]["url"].endswith("AAAA")


def test_regex_mode_needs_no_ner_and_still_finds_structured_data():
    v = run(check(mode="regex", entities={"EMAIL_ADDRESS": "redact", "PERSON": "redact"}).request(
        _ex("Jane wrote from jane@example.com")))
    assert v.rewrites[("messages", 0, "content")].endswith("<EMAIL_ADDRESS>")


def test_long_prompts_are_analysed_in_full():
    filler = "This sentence carries no personal data at all. " * 400  # ~19k chars, several chunks
    text = filler + "Reach me at tail.end@example.com please."
    v = run(check(entities={"EMAIL_ADDRESS": "block"}).request(_ex(text)))
    assert v.action is Action.BLOCK
    pieces = chunks(text, 4000)
    assert "".join(p for _, p in pieces) == text and all(len(p) <= 4000 for _, p in pieces)


def test_non_english_mixed_scripts_and_empty_messages_do_not_crash():
    c = check(entities={"EMAIL_ADDRESS": "redact", "PERSON": "redact"})
    assert run(c.request(_ex(""))).action is Action.ALLOW
    v = run(c.request(_ex("Напишите мне: иван@пример.рф или ivan@example.ru 你好，我的邮箱是 li@example.cn")))
    assert v.action is Action.REDACT
    assert "ivan@example.ru" not in v.rewrites[("messages", 0, "content")]


def test_response_phase_redacts_output():
    v = run(check(entities={"EMAIL_ADDRESS": "pseudonymize"}).response(_ex(), OutputSegment(0, "Mail ceo@corp.com.")))
    assert v.action is Action.REDACT and v.rewrite == "Mail <EMAIL_ADDRESS>."


def test_policy_errors_name_the_problem():
    with pytest.raises(ValidationError, match="unknown entity type.*PASSPORT_NUMBER"):
        PiiParams(entities={"PASSPORT_NUMBER": "redact"})
    with pytest.raises(ValidationError, match="explode"):
        PiiParams(entities={"PERSON": "explode"})
    with pytest.raises(ValidationError):
        PiiParams(entitys={"PERSON": "redact"})
    with pytest.raises(ValidationError, match="valid regular expression"):
        PiiParams(recognizers=[{"entity": "X", "patterns": ["(oops"]}], entities={"X": "redact"})


def test_engine_quality_smoke_on_typical_sentences():
    ents = PiiEngine().analyze("Tomomi Nishiyama lives at 86036 Rua do Arenque 1634, Goiânia. Call 0688 872 49 99.")
    kinds = {e.type for e in ents}
    assert {"PERSON", "LOCATION", "PHONE_NUMBER"} <= kinds


@pytest.mark.parametrize("on_error, blocked", [("open", False), ("closed", True)])
def test_a_crashing_pii_check_is_contained_per_on_error(tmp_path, on_error, blocked):
    from gateway.config.yamlfile import load_yaml
    from gateway.errors import GuardrailUnavailable
    from gateway.pipeline import build_pipeline

    (tmp_path / "p.yaml").write_text(f"request:\n  - {{type: pii, on_error: {on_error}}}\n")
    pipeline = build_pipeline("p", load_yaml(tmp_path / "p.yaml"))

    def boom(text, *args):
        raise RuntimeError("analyzer exploded on " + text)  # the message quotes user text

    engine = pipeline.request_checks[0].check.engine
    engine.analyze = engine.analyze_prepared = boom
    ex = _ex("Maria Lopez, maria@example.com")
    if blocked:
        with pytest.raises(GuardrailUnavailable):
            run(pipeline.run_request(ex))
    else:
        run(pipeline.run_request(ex))
    result = ex.results[0]
    assert result.status == "error" and result.error == "RuntimeError"
    assert "Maria" not in repr(result.to_json())


def test_unused_policies_do_not_load_models(tmp_path):
    from tests.helpers import running_gateway, write_policies

    root = write_policies(tmp_path, """
    upstreams: {mock: {type: mock}}
    models: {echo: {targets: [{upstream: mock, model: echo}]}}
    server: {watch_interval_s: 0}
    """, unused="request: [{type: pii}]\n")
    with running_gateway(root) as gw:
        from gateway.keys import HOLDER

        pii = gw.app[HOLDER].current.pipelines["unused"].request_checks[0].check
        assert gw.app[HOLDER].ready and not pii.engine.loaded


def test_streamed_tool_call_arguments_are_restored_too():
    from gateway.stream_relay import _restore_chunk

    p = Pseudonyms()
    p.placeholder("PERSON", "Ada Lovelace")
    r = Restorer(p)

    def chunk(delta, finish=None):
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    pieces = ['{"to": "<PER', 'SON_1>", "cc": "<PERSON_', '1']
    out = [_restore_chunk(r, chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})) for a in pieces]
    last = _restore_chunk(r, chunk({}, "tool_calls"))
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in out + [last])
    assert args == '{"to": "Ada Lovelace", "cc": "<PERSON_1'  # a placeholder never completed is released as is
