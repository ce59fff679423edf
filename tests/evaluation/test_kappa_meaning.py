"""The judge-calibration line says in words what its kappa means (issue #20 item 8: the shipped suite's
kappa 0.000 next to accuracy 0.917 read as a good judge)."""

from __future__ import annotations

from gateway.stats.agreement import cohen_kappa
from gateway.evaluation.report import kappa_meaning


def meaning(pairs):
    return kappa_meaning(pairs, cohen_kappa([h for h, _ in pairs], [m for _, m in pairs]))


def test_a_judge_that_always_passes_has_shown_nothing():
    text = meaning([("pass", "pass")] * 22 + [("fail", "pass")] * 2)
    assert "answered pass on every case" in text and "0.917" in text and "has not shown" in text


def test_one_class_of_human_labels_cannot_judge_agreement():
    assert "every human label is pass" in meaning([("pass", "pass"), ("pass", "fail")])


def test_bands_and_few_minority_labels():
    good = [("pass", "pass")] * 20 + [("fail", "fail")] * 10 + [("fail", "pass")]
    assert "almost perfect" in meaning(good) and "uncertain" not in meaning(good)
    few = [("pass", "pass")] * 20 + [("fail", "fail")] * 2 + [("pass", "fail")] * 2
    assert "only 2 labels of the rarer class" in meaning(few)
    chance = [("pass", "fail"), ("fail", "pass")] * 5
    assert "no better than chance" in meaning(chance)
