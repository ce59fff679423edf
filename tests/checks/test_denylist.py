import asyncio

import pytest
from pydantic import ValidationError

from gateway.checks.base import Action, OutputSegment
from gateway.checks.denylist import DenyList, DenyListParams
from gateway.exchange import Exchange


def _ex(*contents):
    return Exchange("chat.completions", {"messages": [{"role": "user", "content": c} for c in contents]})


def run(coro):
    return asyncio.run(coro)


def test_words_match_whole_words_case_insensitively():
    check = DenyList(DenyListParams(words=["secret"]))
    assert run(check.request(_ex("Top SECRET stuff"))).action is Action.BLOCK
    assert run(check.request(_ex("secretary of state"))).action is Action.ALLOW


def test_redact_rewrites_each_field_and_reports_counts_not_text():
    check = DenyList(DenyListParams(patterns=[r"\d{3}-\d{4}"], action="redact", replacement="#"))
    v = run(check.request(_ex("call 555-1234", "or 555-9999 or 555-0000")))
    assert v.action is Action.REDACT
    assert v.rewrites == {("messages", 0, "content"): "call #", ("messages", 1, "content"): "or # or #"}
    assert v.details == {"category": "denylist", "matches": 3, "fields": ["messages.0.content", "messages.1.content"]}
    assert "555" not in str(v.details) and "555" not in v.reason


def test_response_phase_redacts_segment():
    check = DenyList(DenyListParams(words=["foo"], action="redact"))
    v = run(check.response(_ex(), OutputSegment(0, "a foo b")))
    assert v.action is Action.REDACT and v.rewrite == "a [REDACTED] b"


def test_huge_input_is_scanned_in_full_off_the_loop():
    check = DenyList(DenyListParams(words=["needle"]))
    text = "hay " * 100_000 + "needle"
    assert run(check.request(_ex(text))).action is Action.BLOCK


def test_bad_params_are_rejected():
    with pytest.raises(ValidationError):
        DenyListParams(patterns=["(unclosed"])
    with pytest.raises(ValidationError):
        DenyListParams(words=["x"], action="explode")
    with pytest.raises(ValueError):
        DenyList(DenyListParams())
