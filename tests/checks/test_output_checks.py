"""faithfulness, citations and safety checks on their own (real MiniLM; judge parsing)."""

import asyncio

import pytest
from pydantic import ValidationError

from gateway.checks.base import Action, OutputSegment
from gateway.checks.citations import Citations, CitationsParams
from gateway.checks.faithfulness import Faithfulness, FaithfulnessParams, JudgeError, parse_judge
from gateway.checks.safety import Safety, SafetyParams
from gateway.exchange import Exchange, GatewayOptions

DOC = ("The Eiffel Tower is 330 metres tall. It was completed in 1889 for the World's Fair in Paris. "
       "Gustave Eiffel's company designed and built it.")


def _ex(context=(DOC,), question="Tell me about the Eiffel Tower", tools=()):
    messages = [{"role": "user", "content": question}]
    messages += [{"role": "tool", "tool_call_id": f"call_{i}", "content": t} for i, t in enumerate(tools)]
    options = GatewayOptions(context=[{"id": f"d{i + 1}", "text": t} for i, t in enumerate(context)]) if context else GatewayOptions()
    return Exchange("chat.completions", {"messages": messages}, options)


def run(coro):
    return asyncio.run(coro)


def seg(text):
    return OutputSegment(0, text)


def test_faithfulness_flags_invented_facts_and_passes_supported_ones():
    check = Faithfulness(FaithfulnessParams(action="flag"))
    ok = run(check.response(_ex(), seg("The Eiffel Tower is 330 metres tall and was completed in 1889.")))
    bad = run(check.response(_ex(), seg("The Eiffel Tower is 512 metres tall and was built by Napoleon in 1920.")))
    assert ok.action is Action.ALLOW and ok.score >= check.threshold
    assert bad.action is Action.FLAG and bad.details["unsupported"][0]["index"] == 0
    assert "Napoleon" not in repr(bad.details)  # positions, not text


def test_faithfulness_redacts_only_unsupported_sentences_and_reads_tool_documents():
    check = Faithfulness(FaithfulnessParams(action="redact", replacement="[X]"))
    ex = _ex(context=(), tools=(DOC,))
    v = run(check.response(ex, seg("It was completed in 1889. The tower is painted gold by Elon Musk every 2 years.")))
    assert v.action is Action.REDACT and v.rewrite == "It was completed in 1889. [X]"


def test_no_context_is_skipped_or_blocked_per_policy_and_empty_answers_pass():
    v = run(Faithfulness(FaithfulnessParams()).response(_ex(context=()), seg("Anything at all.")))
    assert v.action is Action.ALLOW and v.details["skipped"] == "no context"
    v = run(Faithfulness(FaithfulnessParams(on_missing_context="block")).response(_ex(context=()), seg("x y")))
    assert v.action is Action.BLOCK and "no context" in v.reason
    assert run(Faithfulness(FaithfulnessParams()).response(_ex(), seg("  "))).action is Action.ALLOW


def test_context_from_a_request_field():
    check = Faithfulness(FaithfulnessParams(context_from=[], context_field="metadata.docs"))
    ex = Exchange("chat.completions", {"messages": [{"role": "user", "content": "q"}],
                                       "metadata": {"docs": [{"id": "a", "text": DOC}]}})
    assert run(check.response(ex, seg("The Eiffel Tower is 330 metres tall."))).action is Action.ALLOW
    with pytest.raises(ValidationError, match="context_from"):
        FaithfulnessParams(context_from=[])


def test_huge_contexts_are_bounded_and_still_read_in_full():
    filler = " ".join(f"Paragraph {i} is about gardening and compost." for i in range(3000))
    check = Faithfulness(FaithfulnessParams(max_context_sentences=50))
    ex = _ex(context=(filler + " " + DOC,))
    # Not every word is in the documents, so the semantic part runs and embeds (a bounded part of) them.
    v = run(check.response(ex, seg("Gustave Eiffel's firm constructed the landmark.")))
    assert v.score is not None and v.details["per_claim"][0]["lexical"] < 1
    assert 0 < len(ex.state["faithfulness.context"].result().vectors) <= 50
    # the lexical part read everything: a fact from the very end of the huge document is supported
    assert run(check.response(ex, seg("Gustave Eiffel's company designed and built it."))).action is Action.ALLOW


def test_answers_in_other_languages_are_scored_not_crashed():
    v = run(Faithfulness(FaithfulnessParams()).response(_ex(), seg("La tour Eiffel mesure 330 mètres.")))
    assert v.score is not None


def test_judge_replies_are_parsed_strictly():
    assert parse_judge('Sure: {"supported": [0], "unsupported": [1], "confidence": 0.8}', 2) == {
        "score": 0.5, "unsupported": [1], "confidence": 0.8}
    for bad in ("no json here", '{"supported": [0]', '{"supported": [0], "unsupported": [7]}',
                '{"supported": "all", "unsupported": []}'):
        with pytest.raises(JudgeError):
            parse_judge(bad, 2)


def test_citations_unknown_documents_unsupported_and_malformed_markers():
    check = Citations(CitationsParams(action="flag"))
    ex = _ex(context=(DOC, "The Colosseum in Rome held 50,000 spectators."))
    v = run(check.response(ex, seg("The tower is 330 metres tall [1]. The Colosseum held 50,000 people [d2]. "
                                   "It was designed by Leonardo da Vinci [d1]. See also [d9]. Broken [d1")))
    assert v.action is Action.FLAG
    assert [m["refs"] for m in v.details["missing_documents"]] == [["d9"]]
    assert [u["index"] for u in v.details["unsupported"]] == [2]
    assert v.details["malformed_markers"] == 1 and v.details["cited_sentences"] == 4


def test_citations_custom_pattern_required_citations_and_redact():
    check = Citations(CitationsParams(pattern=r"\{\{(\w+)\}\}", require_citations=True, action="redact", replacement="-"))
    v = run(check.response(_ex(), seg("It is 330 metres tall {{d1}}. Paris is lovely.")))
    assert v.action is Action.REDACT and v.rewrite == "It is 330 metres tall {{d1}}. -"
    with pytest.raises(ValidationError, match="group"):
        CitationsParams(pattern=r"\[\d+\]")


def test_safety_categories_and_pii_with_replacement_text():
    check = Safety(SafetyParams(
        categories=[{"name": "violence", "words": ["kill"], "action": "block"},
                    {"name": "profanity", "patterns": [r"\bdarn\w*"], "action": "redact"}],
        pii={"mode": "regex", "entities": {"EMAIL_ADDRESS": "redact"}}, replacement="[removed]"))
    v = run(check.response(_ex(), seg("Darn it, mail bob@example.org.")))
    assert v.action is Action.REDACT and v.rewrite == "[removed] it, mail [removed]."
    assert set(v.details["categories"]) == {"profanity", "pii"}
    assert run(check.response(_ex(), seg("I will kill the process."))).action is Action.BLOCK
    with pytest.raises(ValidationError):
        SafetyParams()


def test_faithfulness_learned_score_is_calibrated_and_weights_are_checked(tmp_path):
    check = Faithfulness(FaithfulnessParams())
    assert 0 < check.threshold < 1 and check.model is not None
    supported = run(check.response(_ex(), seg("It was completed in 1889 for the World's Fair in Paris.")))
    assert supported.details["detector"] == "learned" and supported.score >= check.threshold
    # Recombined: the source's own words, the wrong relation (the company was not built by the fair).
    swapped = run(check.response(_ex(), seg("The World's Fair in Paris designed Gustave Eiffel's company in 1889.")))
    assert swapped.score < supported.score
    with pytest.raises(ValueError, match="missing.npz"):
        Faithfulness(FaithfulnessParams(weights=str(tmp_path / "missing.npz")))
    fallback = Faithfulness(FaithfulnessParams(weights=str(tmp_path / "missing.npz"), fallback="heuristics"))
    v = run(fallback.response(_ex(), seg("The Eiffel Tower is 512 metres tall.")))
    assert v.details["detector"] == "heuristics" and fallback.threshold == 0.78 and v.action is Action.FLAG


def test_an_honest_hedge_is_not_a_hallucination():
    check = Faithfulness(FaithfulnessParams(action="flag"))
    hedge = run(check.response(_ex(), seg("The documents do not say who painted the tower.")))
    invented = run(check.response(_ex(), seg("The tower was painted by Claude Monet in 1902.")))
    assert hedge.score > invented.score
