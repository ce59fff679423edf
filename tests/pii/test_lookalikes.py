"""Look-alikes in technical and business text: suppressed in the default tier, kept in `recall`,
while real personal data around them is still found. Texts written for these tests."""

import shutil

import pytest

from gateway.pii.engine import PiiEngine
from gateway.pii.span_filter import WEIGHTS
from gateway.detectors.linear import WeightsError

ALL_TYPES = 0.4  # every type the engine emits, at the benchmark's score floor


@pytest.fixture(scope="module")
def engines():
    balanced, recall = PiiEngine(mode="ner"), PiiEngine(mode="ner", tier="recall")
    balanced.load()
    recall.load()
    return balanced, recall


def found(engine, text):
    return [(e.type, text[e.start:e.end]) for e in engine.analyze(text) if e.score >= ALL_TYPES]


@pytest.mark.parametrize("text", [
    "Upgraded the agent to version 10.4.2.17 and rebuilt the image; no rollback needed.",
    "Fixed a crash in setup.py and CHANGES.txt when the locale is unset.",
    "Order 4155550132 shipped today; ticket #88213 is closed.",
    "SKU 7734-5521-90 is back in stock, see build 2024.3.1 notes.",
    "Call importlib.metadata.version() instead of pkg_resources.",
    "Require pytest-mock for the test suite (#5230).",
    "The ConnectionError is raised by InstallCommand.run when the proxy is down.",
    "Travis CI and Mac OS builds pass on the release branch.",
])
def test_lookalikes_raise_no_alarm_by_default(engines, text):
    balanced, recall = engines
    assert found(balanced, text) == [], found(balanced, text)


def test_recall_tier_keeps_every_candidate(engines):
    balanced, recall = engines
    text = "Fixed a crash in setup.py and CHANGES.txt; upgraded to 10.4.2.17."
    assert found(recall, text) and not found(balanced, text)


def test_personal_data_next_to_lookalikes_is_still_found(engines):
    balanced, _ = engines
    text = ("Ticket #88213 from Maria Lopez (maria.lopez@example.com): after the upgrade to 3.2.1 she cannot log in. "
            "Call her on +1 415-555-0132.")
    kinds = {t for t, _ in found(balanced, text)}
    assert {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"} <= kinds
    assert ("IP_ADDRESS", "3.2.1") not in found(balanced, text)


def test_missing_filter_weights_name_the_file(tmp_path, monkeypatch):
    from gateway.pii import span_filter

    moved = tmp_path / "pii-filter.npz"
    monkeypatch.setattr(span_filter, "WEIGHTS", moved)
    with pytest.raises(WeightsError, match="pii-filter.npz"):
        span_filter.load_shared(moved)
    shutil.copy(WEIGHTS, moved)
    assert span_filter.load_shared(moved).thresholds["balanced"] >= 0
