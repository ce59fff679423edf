"""The learned faithfulness score: a calibrated logistic model over the claim scorer's signals and
signals of recombination, trained by `gateway train faithfulness` (gateway/training/faithfulness.py).

Word overlap alone cannot see a false statement made of the source's own words ("the board
appointed X" when the source has X appointing the board, a date moved to another event), so
besides the scorer's lexical, semantic, number / name, personal and contradiction parts, each claim
is read for:
  n-gram support  the share of its consecutive content-word pairs and triples found consecutively
                  in the source (recombined words break them);
  locality        the share of its content words that one source sentence (or a window of three)
                  holds, against the share the whole source holds (support scattered over a
                  document is weaker than support in one place);
  hedging         "the documents do not say", "I am not sure": an honest answer with nothing to
                  support is not a hallucination.
The answer's features are the mean and minimum over its claims (never a count, and never its
length: length is a shortcut in some data sets and means nothing in others).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gateway.detectors import calibration
from gateway.detectors.linear import FeatureSpec, LinearScorer, WeightsFile
from gateway.faithfulness.scorer import _CITATION, Claim, Context, content_words

WEIGHTS = Path(__file__).resolve().parent.parent / "guard_data" / "faithfulness-model.npz"
CLAIM_FEATURES = ("lexical", "semantic", "bigram", "trigram", "sentence_cover", "window_cover", "novel_number",
                  "novel_name", "personal", "contradiction", "hedge")
FEATURES = tuple([f"mean_{f}" for f in CLAIM_FEATURES] + [f"min_{f}" for f in CLAIM_FEATURES]
                 + ["scorer", "min_support"])
_HEDGE = re.compile(
    r"\b(?:(?:the|these|this|those|provided|given|available|supplied)\s+(?:documents?|sources?|context|articles?|"
    r"texts?|passages?|information|excerpts?)\s+(?:do(?:es)?\s+not|don'?t|doesn'?t|did\s+not)\s+"
    r"(?:say|mention|state|specify|contain|include|cover|provide|indicate)"
    r"|\bnot\s+(?:mentioned|stated|specified|covered|provided|included)\s+in\s+the\b"
    r"|\bi(?:'m| am)\s+not\s+(?:sure|certain|aware)|\bi\s+(?:do\s+not|don'?t)\s+know\b"
    r"|\b(?:there is|there's)\s+no\s+(?:information|mention|data|detail)s?\b"
    r"|\bi\s+(?:could\s+not|couldn'?t|cannot|can'?t)\s+find\b|\bunclear\s+from\s+the\b)", re.I)


def spec() -> FeatureSpec:
    return FeatureSpec((), 1, 1, 0, FEATURES)


class Grams:
    """Content-word n-grams and per-sentence word sets of the documents (prepared once)."""

    def __init__(self, ctx: Context) -> None:
        seq = content_words(ctx.text)
        self.bigrams = set(zip(seq, seq[1:]))
        self.trigrams = set(zip(seq, seq[1:], seq[2:]))
        self.sentences = [set(content_words(s)) for s in ctx.sentences]


def claim_features(answer: str, claim: Claim, ctx: Context, grams: Grams) -> dict[str, float]:
    text = _CITATION.sub(" ", answer[claim.start:claim.end])
    words = content_words(text, drop_fillers=True)
    bis = list(zip(words, words[1:]))
    tris = list(zip(words, words[1:], words[2:]))
    wset = set(words)
    best = max(range(len(grams.sentences)), key=lambda i: len(wset & grams.sentences[i]), default=None)
    sentence_cover = window_cover = 0.0
    if best is not None and wset:
        sentence_cover = len(wset & grams.sentences[best]) / len(wset)
        window = set().union(*grams.sentences[max(0, best - 1): best + 2])
        window_cover = len(wset & window) / len(wset)
    return {
        "lexical": claim.lexical,
        "semantic": claim.semantic if claim.semantic is not None else claim.lexical,
        "bigram": sum(b in grams.bigrams for b in bis) / len(bis) if bis else claim.lexical,
        "trigram": sum(t in grams.trigrams for t in tris) / len(tris) if tris else claim.lexical,
        "sentence_cover": sentence_cover,
        "window_cover": window_cover,
        "novel_number": float(claim.novel_numbers > 0),
        "novel_name": float(claim.novel_names > 0),
        "personal": float(claim.personal),
        "contradiction": float(claim.contradiction),
        "hedge": float(bool(_HEDGE.search(text))),
    }


def answer_features(per_claim: list[dict[str, float]], scorer: float, supports: list[float]) -> dict[str, float]:
    out: dict[str, float] = {"scorer": scorer, "min_support": min(supports) if supports else 1.0}
    for name in CLAIM_FEATURES:
        values = [c[name] for c in per_claim] or [1.0]
        out[f"mean_{name}"] = float(np.mean(values))
        out[f"min_{name}"] = float(min(values))
    return out


class FaithfulnessModel:
    def __init__(self, weights: WeightsFile) -> None:
        m = weights.manifest
        self.manifest = m
        fs = FeatureSpec.from_json(m["features"])
        self.spec = fs
        self.scorer = LinearScorer.from_arrays(fs, weights.arrays, "answer")
        self.mean = np.asarray(weights.arrays["scale.mean"], dtype=np.float64)
        self.std = np.asarray(weights.arrays["scale.std"], dtype=np.float64)
        self.calibrator = calibration.from_json(m["calibration"])
        self.threshold = float(m["threshold"])

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> FaithfulnessModel:
        return cls(WeightsFile.load(path, "faithfulness"))

    def raw(self, features: dict[str, float]) -> float:
        x = (np.array([features[f] for f in self.spec.flags]) - self.mean) / self.std
        return float(self.scorer.bias + self.scorer.w_flags @ x)

    def probability(self, features: dict[str, float]) -> float:
        """Calibrated probability that the answer (or one claim) is supported by the documents."""
        return float(self.calibrator(self.raw(features)))
