"""The claim-level faithfulness scorer (pure computation; semantic part off unless vectors given)."""

from gateway.faithfulness.scorer import Context, content_words, score_claims, split_claims

DOCS = ["Acme Corp was founded in 1998 in Oslo by two engineers. It makes marine sensors and employs 240 people. "
        "Revenue grew 12 percent last year."]


def score(answer, question=""):
    return score_claims(answer, Context(DOCS, question))


def test_supported_claims_score_high_and_invented_ones_low():
    good = score("Acme Corp was founded in 1998 in Oslo. It makes marine sensors.")
    bad = score("Acme Corp was founded in 2004 in Bergen by Elon Musk.")
    assert good.score > 0.9 and bad.score < 0.5
    claim = bad.claims[0]
    assert claim.novel_numbers == 1 and claim.novel_names >= 1


def test_contradictions_and_personal_claims_are_penalised():
    assert score("Revenue fell 12 percent last year.").claims[0].contradiction
    assert not score("Revenue grew 12 percent last year.").claims[0].contradiction
    assert score("Acme Corp does not make marine sensors.").claims[0].contradiction
    personal = score("I visited their sensor factory in Oslo.")
    assert personal.claims[0].personal and personal.score < score("Their sensor factory is in Oslo.").score


def test_fillers_are_not_claims_and_words_from_the_question_do_not_count_as_support():
    r = score("Sure! Absolutely. Acme makes marine sensors.")
    assert len(r.claims) == 1 and r.score == 1.0
    assert score("", question="anything").score == 1.0 and score("", question="x").claims == []


def test_number_words_match_digits_and_unsupported_claims_are_listed():
    assert content_words("twelve employees") == content_words("12 employee")
    assert score("Revenue grew twelve percent.").claims[0].novel_numbers == 0
    r = score("Acme makes marine sensors. It employs 900 people in Tokyo.")
    assert r.unsupported(0.8) == [1] and r.claims[1].novel_numbers == 1


def test_split_claims_handles_other_scripts_and_no_punctuation():
    text = "东京是日本的首都。大阪很大。 And then english without a stop"
    spans = split_claims(text)
    assert len(spans) == 3 and "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")
    r = score("Acme wurde 1998 in Oslo gegründet und stellt Sensoren her.")
    assert 0.0 <= r.score <= 1.0  # scored, not crashed; few words are shared with an English context
