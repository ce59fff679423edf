"""The learned prompt-injection detector: which part of a request carries an attack, and how likely.

A request is judged part by part (each user turn, tool result, supplied document), since indirect
injection hides in pasted content. Each part is read three ways, by two linear models trained in
`gateway/training/injection.py`:
  whole    the part as one text (jailbreak templates spread their signal over a page);
  pieces   ~400-character pieces (an instruction planted in one paragraph of an e-mail stands out);
  decoded  pieces of decoded readings (base64, ROT13, leetspeak, ... see views.py).
Features: hashed character 2-5-grams and word 1-2-grams, MiniLM embeddings of the pieces, and the
pattern families of injection_patterns.py. The highest raw score of the readings is calibrated
(Platt, fitted on the dev split) into a probability. The families also act outside the model, as a
prior: p = 1 - (1 - p_model)(1 - w), w the weight of the strongest family that matched. The model
alone cannot give them their due, because several (fake role markers, notes addressed to the AI,
overrides in other languages, optimisation suffixes) are all but absent from the training data;
on the dev split the prior adds no false alarms (measured: 0.0 points at the shipped threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gateway.detectors import calibration
from gateway.detectors.injection_patterns import FAMILY_NAMES, FAMILY_WEIGHTS, family_hits, family_matches
from gateway.detectors.linear import FeatureSpec, LinearScorer, TextFeatures, WeightsFile
from gateway.detectors.views import decoded_views
from gateway.models.chunking import chunks
from gateway.models.embedder import PIECE_CHARS  # the same pieces as topics: one embedding pass serves both

WEIGHTS = Path(__file__).resolve().parent.parent / "guard_data" / "injection-model.npz"
EMBED_DIM = 384
Embed = Callable[[list[str]], np.ndarray]  # texts -> unit vectors, one row each


@dataclass(frozen=True, slots=True)
class Reading:
    view: str  # "whole", "piece", or the decoder's name ("base64", "rot13", ...)
    start: int  # offset of the piece in the part (decoded readings: of the piece they came from)
    text: str


@dataclass(slots=True)
class PartPlan:
    """What one part needs embedded, worked out before any model runs (so a request's parts are
    embedded in one batch), and the pattern families found in it."""

    text: str
    pieces: list[Reading]
    decoded: list[Reading] = field(default_factory=list)
    matches: list[tuple[str, int]] = field(default_factory=list)  # (family, offset) in `text`

    def flags(self, start: int = 0, end: int | None = None) -> dict[str, float]:
        end = len(self.text) if end is None else end
        return {name: 1.0 for name, at in self.matches if start <= at < end}

    def texts_to_embed(self) -> list[str]:
        return [r.text for r in (*self.pieces, *self.decoded)]


@dataclass(slots=True)
class PartScore:
    probability: float
    raw: float
    view: str
    start: int
    end: int
    families: list[str]
    model: float = 0.0  # the calibrated model probability, before the families' prior

    def to_json(self) -> dict:
        return {"probability": round(self.probability, 4), "model": round(self.model, 4), "view": self.view,
                "start": self.start, "end": self.end, "families": self.families}


def plan(text: str) -> PartPlan:
    pieces = [Reading("piece", off, p) for off, p in chunks(text, PIECE_CHARS) if p.strip()] or [Reading("piece", 0, text)]
    decoded = []
    for piece in pieces:
        for kind, reading in decoded_views(piece.text):
            decoded.extend(Reading(kind, piece.start, p) for _, p in chunks(reading, PIECE_CHARS) if p.strip())
    return PartPlan(text, pieces, decoded, family_matches(text))


def whole_features(spec: FeatureSpec, p: PartPlan, vectors: np.ndarray) -> TextFeatures:
    """`vectors`: one row per plain piece. Dense part: length-weighted mean and elementwise max."""
    w = np.array([len(r.text) for r in p.pieces], dtype=np.float32)
    dense = np.concatenate([(vectors * w[:, None]).sum(0) / w.sum(), vectors.max(0)])
    return spec.featurize(p.text, dense, p.flags())


def piece_features(spec: FeatureSpec, p: PartPlan, r: Reading, vector: np.ndarray) -> TextFeatures:
    """A plain piece takes the families matched in its span; a decoded reading is scanned itself."""
    fl = p.flags(r.start, r.start + len(r.text)) if r.view == "piece" else {k: 1.0 for k in family_hits(r.text)}
    return spec.featurize(r.text, np.concatenate([vector, vector]), fl)


def default_spec() -> FeatureSpec:
    return FeatureSpec((2, 3, 4, 5), 18, 18, 2 * EMBED_DIM, FAMILY_NAMES)


class InjectionDetector:
    def __init__(self, weights: WeightsFile) -> None:
        m = weights.manifest
        self.manifest = m
        self.spec = FeatureSpec.from_json(m["features"])
        self.whole = LinearScorer.from_arrays(self.spec, weights.arrays, "whole")
        self.piece = LinearScorer.from_arrays(self.spec, weights.arrays, "piece")
        self.calibrator = calibration.from_json(m["calibration"])
        self.threshold = float(m["threshold"])

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> InjectionDetector:
        return cls(WeightsFile.load(path, "injection"))

    def score_plan(self, p: PartPlan, vectors: np.ndarray) -> PartScore:
        """`vectors`: embeddings of `p.texts_to_embed()`, in that order."""
        n = len(p.pieces)
        scored: list[tuple[float, Reading]] = []
        if n == 1:  # one piece: the whole and the piece reading have the same features
            f = piece_features(self.spec, p, p.pieces[0], vectors[0])
            scored += [(self.whole.raw(f), Reading("whole", 0, p.text)), (self.piece.raw(f), p.pieces[0])]
        else:
            scored.append((self.whole.raw(whole_features(self.spec, p, vectors[:n])), Reading("whole", 0, p.text)))
            scored += [(self.piece.raw(piece_features(self.spec, p, r, vectors[i])), r)
                       for i, r in enumerate(p.pieces)]
        scored += [(self.piece.raw(piece_features(self.spec, p, r, vectors[n + i])), r)
                   for i, r in enumerate(p.decoded)]
        raw, best = max(scored, key=lambda s: s[0])
        model = float(self.calibrator(raw))
        hits = {name for name, _ in p.matches}
        for r in p.decoded:
            hits.update(family_hits(r.text))
        prior = max((FAMILY_WEIGHTS[k] for k in hits), default=0.0)
        prob = 1 - (1 - model) * (1 - prior)
        end = len(p.text) if best.view == "whole" else best.start + (len(best.text) if best.view == "piece" else 0)
        if best.view not in ("whole", "piece"):  # a decoded reading: point at the piece it came from
            end = next((r.start + len(r.text) for r in p.pieces if r.start == best.start), len(p.text))
        return PartScore(prob, raw, best.view, best.start, end, sorted(hits), model)

    def score(self, text: str, embed: Embed) -> PartScore:
        p = plan(text)
        return self.score_plan(p, embed(p.texts_to_embed()))
