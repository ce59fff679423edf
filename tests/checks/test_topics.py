import asyncio

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.checks.base import Action
from gateway.checks.topics import Topics, TopicsParams
from gateway.exchange import Exchange

BANKING = {"name": "banking", "examples": ["what is my account balance", "transfer money to savings",
                                           "my card was declined", "how do I change my PIN"]}


def _ex(*contents):
    return Exchange("chat.completions", {"messages": [{"role": "user", "content": c} for c in contents]})


def run(coro):
    return asyncio.run(coro)


def test_allowed_topics_block_off_topic_and_report_the_closest_topic():
    c = Topics(TopicsParams(allowed=[BANKING], threshold=0.3))
    run(c.warm())
    on = run(c.request(_ex("how much money is in my checking account")))
    off = run(c.request(_ex("give me a recipe for lasagna")))
    assert on.action is Action.ALLOW and on.details["topic"] == "banking"
    assert off.action is Action.BLOCK and "off-topic" in off.reason and off.score > on.score


def test_only_the_newest_user_turn_is_judged_by_default():
    c = Topics(TopicsParams(allowed=[BANKING], threshold=0.3))
    assert run(c.request(_ex("what is my balance", "and a lasagna recipe please"))).action is Action.BLOCK


def test_denied_topics_with_keywords_and_flag_action():
    c = Topics(TopicsParams(denied=[{"name": "medical", "examples": ["what medicine should I take for my headache"],
                                     "keywords": ["dosage"]}], action="flag", threshold=0.5))
    v = run(c.request(_ex("what's the right dosage?")))
    assert v.action is Action.FLAG and v.details["denied"]["medical"] == 1.0
    assert run(c.request(_ex("what is the capital of France"))).action is Action.ALLOW


def test_examples_are_embedded_once_per_load_not_per_request(monkeypatch):
    from gateway.models import embedder

    c = Topics(TopicsParams(allowed=[BANKING]))
    run(c.warm())
    calls = []
    real = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts: calls.append(len(texts)) or real(texts))
    run(c.request(_ex("balance please")))
    run(c.request(_ex("transfer 10 dollars")))
    assert calls == [1, 1]  # only the request text, never the examples again


def test_long_non_english_text_is_scored_in_pieces():
    c = Topics(TopicsParams(allowed=[BANKING], threshold=0.3))
    # Past MiniLM's 256-token window: a model that only read the start would see French cooking only.
    french = "Bonjour, je voudrais une recette de cuisine. " * 200
    banking = ("I need help with my checking account. What is my current balance? "
               "Can I transfer money to my savings account? My card was declined yesterday.")
    only_french = run(c.request(_ex(french)))
    with_banking = run(c.request(_ex(french + banking)))
    assert only_french.action is Action.BLOCK
    assert with_banking.details["allowed"]["banking"] > only_french.details["allowed"]["banking"] + 0.1


def test_bad_topic_config_is_rejected():
    with pytest.raises(ValidationError, match="declare"):
        TopicsParams()
    with pytest.raises(ValidationError, match="examples"):
        TopicsParams(allowed=[{"name": "x"}])
    with pytest.raises(ValidationError, match="unique"):
        TopicsParams(allowed=[BANKING, BANKING])


def test_topics_and_injection_on_one_request_share_one_model_pass(monkeypatch):
    """The checks of a request run concurrently: the second to ask for a piece's vector awaits the
    pass already in flight instead of embedding the same text again."""
    from gateway.checks.injection import Injection, InjectionParams
    from gateway.models import embedder

    topics, injection = Topics(TopicsParams(allowed=[BANKING], threshold=0.3)), Injection(InjectionParams())
    embedded = []
    real = embedder._encode_list
    monkeypatch.setattr(embedder, "_encode_list", lambda texts: embedded.append(list(texts)) or real(texts))
    text = "Please move 200 dollars from checking to savings today. " * 12  # two pieces

    async def go():
        await topics.warm()
        await injection.warm()
        ex = _ex(text)
        t, i = await asyncio.gather(topics.request(ex), injection.request(ex))
        return ex, t, i

    ex, t, i = run(go())
    pieces = embedder.pieces(text)
    assert len(pieces) == 2
    assert sorted(x for batch in embedded for x in batch) == sorted(pieces)  # each piece embedded once
    assert "banking" in t.details["allowed"] and i.action is Action.ALLOW  # both judged the text
    cache = ex.state[embedder.STATE_KEY]
    assert all(isinstance(cache[p], np.ndarray) for p in pieces)  # the pending pass was replaced by vectors


def test_a_cancelled_check_does_not_cancel_the_pass_its_sibling_awaits():
    from gateway.models import embedder

    async def go():
        cache: dict = {}
        first = asyncio.ensure_future(embedder.encode_async(["hello there", "general kenobi"], cache))
        await asyncio.sleep(0)  # the pass is in flight
        second = asyncio.ensure_future(embedder.encode_async(["general kenobi"], cache))
        await asyncio.sleep(0)
        first.cancel()
        vec = await second
        return vec, cache

    vec, cache = run(go())
    assert vec.shape == (1, 384) and isinstance(cache["general kenobi"], np.ndarray)
