"""A learned second opinion on name, place and organisation guesses: is this span personal data?

The NER model and the capitalisation recognizers propose PERSON / LOCATION / ORGANIZATION spans
from their shape; in technical and business text many of them are code names, products and
sentence-initial verbs. This filter scores each such candidate from the span's own form (character
n-grams: "-Error", "-son", "-ville"), its word shapes (CamelCase, digits, all capitals, everyday
word or not, proper-noun tag), the shapes of its neighbours, and the name / country word lists.
It never sees the words around the span, only their shapes, so it learns what a name looks like
rather than which documents names appear in. Trained by `gateway train pii`
(gateway/training/pii.py); the weights and model card are in gateway/guard_data/.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.detectors import calibration
from gateway.detectors import linear
from gateway.detectors.linear import FeatureSpec, LinearScorer, WeightsFile
from gateway.detectors.views import _vocabulary
from gateway.pii.entities import Entity
from gateway.pii.gazetteer import COUNTRIES, first_names, last_names

WEIGHTS = Path(__file__).resolve().parent.parent / "guard_data" / "pii-filter.npz"
FILTERED_SOURCES = frozenset({"SpacyRecognizer", "given_name", "org_form", "place_after_cue", "named_after_cue",
                              "org_after_cue", "letterhead"})
FILTERED_TYPES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP"})
TYPES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
SOURCES = tuple(sorted(FILTERED_SOURCES))
_CODE_SUFFIX = re.compile(
    r"(?:Error|Exception|Warning|Command|Requirement|Handler|Manager|Factory|Config|Client|Server|Session|Request|"
    r"Response|Adapter|Builder|Provider|Base|Mixin|Type|Test|Case|Spec|Info|View|Controller|Module|Plugin|Parser|"
    r"Reader|Writer|Loader|Finder|Resolver|Wrapper|Helper|Event|Context|Result|Options|Hook|Backend|Frontend)s?$")
FLAGS = (
    *(f"type:{t}" for t in TYPES), *(f"source:{s}" for s in SOURCES),
    "words:1", "words:2", "words:3+", "camel_inside", "code_suffix", "has_digit", "all_caps", "all_lower",
    "everyday_word_all", "everyday_word_any", "propn_any", "propn_none", "tagged", "first_name", "last_name",
    "country", "sentence_start", "in_quotes", "before_code_char", "after_code_char", "hyphenated", "non_latin",
    "prev_cap", "next_cap", "prev_lower", "next_lower", "line_start", "line_alone",
)
_TOKEN = re.compile(r"\S+")


def spec() -> FeatureSpec:
    return FeatureSpec((2, 3, 4), 14, 10, 0, FLAGS)


def _shape(tok: str) -> str:
    if not tok:
        return "none"
    if tok.isdigit():
        return "num"
    if tok[0].isupper():
        return "upper" if tok.isupper() and len(tok) > 1 else "cap"
    if tok[0].islower():
        return "lower"
    return "punct"


def span_features(text: str, e: Entity, doc=None):
    span = text[e.start:e.end]
    words = span.split() or [span]
    clean = [w.strip(".,;:!?'\"()") for w in words]
    vocab = _vocabulary()
    before, after = text[max(0, e.start - 40):e.start], text[e.end:e.end + 40]
    prev = (_TOKEN.findall(before) or [""])[-1]
    nxt = (_TOKEN.findall(after) or [""])[0]
    f: dict[str, float] = {f"type:{e.type}": 1.0, f"source:{e.source}": 1.0}
    f[f"words:{min(len(words), 3)}" + ("+" if len(words) >= 3 else "")] = 1.0
    f["camel_inside"] = float(any(re.search(r"[a-z][A-Z]", w) for w in clean))
    f["code_suffix"] = float(any(_CODE_SUFFIX.search(w) and w != w.title() for w in clean))
    f["has_digit"] = float(any(ch.isdigit() for ch in span))
    f["all_caps"] = float(span.isupper())
    f["all_lower"] = float(span.islower())
    every = [w.lower() in vocab for w in clean if w]
    f["everyday_word_all"] = float(bool(every) and all(every))
    f["everyday_word_any"] = float(any(every))
    if doc is not None:
        s = doc.char_span(e.start, e.end, alignment_mode="expand")
        if s is not None:
            f["tagged"] = 1.0
            f["propn_any" if any(t.pos_ == "PROPN" for t in s) else "propn_none"] = 1.0
    f["first_name"] = float(clean[0].upper() in first_names())
    f["last_name"] = float(clean[-1].upper() in last_names())
    f["country"] = float(" ".join(clean).lower() in COUNTRIES)
    f["sentence_start"] = float(not before.strip() or before.rstrip()[-1:] in ".!?:\n")
    f["in_quotes"] = float(before.endswith(("'", '"', "`", "“")) and after.startswith(("'", '"', "`", "”")))
    f["before_code_char"] = float(bool(before) and before[-1] in "`._/\\=(<[{")
    f["after_code_char"] = float(bool(after) and after[0] in "`._/\\=()<[{")
    f["hyphenated"] = float("-" in span)
    f["non_latin"] = float(any(ord(ch) > 0x24F for ch in span if ch.isalpha()))
    f[f"prev_{'cap' if _shape(prev) in ('cap', 'upper') else 'lower' if _shape(prev) == 'lower' else 'x'}"] = 1.0
    f[f"next_{'cap' if _shape(nxt) in ('cap', 'upper') else 'lower' if _shape(nxt) == 'lower' else 'x'}"] = 1.0
    line_start = text.rfind("\n", 0, e.start) + 1
    line_end = text.find("\n", e.end)
    line = text[line_start: len(text) if line_end < 0 else line_end]
    f["line_start"] = float(not text[line_start:e.start].strip(" \t>?"))
    f["line_alone"] = float(line.strip(" \t>?,") == span.strip())
    shapes = f"p2_{_shape((_TOKEN.findall(before) or ['', ''])[-2] if len(_TOKEN.findall(before)) > 1 else '')} " \
             f"p1_{_shape(prev)} n1_{_shape(nxt)} t_{e.type} s_{e.source}"
    fs = spec()
    feats = fs.featurize(span, None, f)
    # The word-n-gram block carries the neighbour shapes (not words): "p1_lower n1_cap ...".
    words_part = fs.featurize(shapes, None, None)
    return type(feats)(feats.char_idx, feats.char_val, words_part.word_idx, words_part.word_val, feats.dense, feats.flags)


class SpanFilter:
    def __init__(self, weights: WeightsFile) -> None:
        m = weights.manifest
        self.manifest = m
        self.scorer = LinearScorer.from_arrays(FeatureSpec.from_json(m["features"]), weights.arrays, "span")
        self.calibrator = calibration.from_json(m["calibration"])
        self.thresholds: dict[str, float] = {k: float(v) for k, v in m["thresholds"].items()}

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> SpanFilter:
        return cls(WeightsFile.load(path, "pii"))

    def probability(self, text: str, e: Entity, doc=None) -> float:
        return float(self.calibrator(self.scorer.raw(span_features(text, e, doc))))

    def keep(self, text: str, ents: list[Entity], tier: str, doc=None) -> list[Entity]:
        threshold = self.thresholds.get(tier)
        if threshold is None:
            return ents
        return [e for e in ents if not (e.type in FILTERED_TYPES and e.source in FILTERED_SOURCES)
                or self.probability(text, e, doc) >= threshold]


def load_shared(path: Path = WEIGHTS) -> SpanFilter:
    """One filter per weights file version per process (every pii check and reload shares it)."""
    return linear.load_shared(SpanFilter.load, path)
