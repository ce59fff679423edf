"""The pattern-and-similarity injection scorer: the fallback when a policy says `fallback: heuristics`
and the learned model cannot load, and the engine behind `extra_attacks`.

Two signals, combined as 1 - (1 - h)(1 - w*e) (w = embedding_weight):
  h  the strongest pattern family that matched (gateway/detectors/injection_patterns.py), in the
     text or in a decoded reading of it (base64, ROT13, spaced letters ...);
  e  MiniLM similarity to known attack phrasings (gateway/guard_data/injection_attacks.txt plus the
     policy's own), rescaled so unrelated text scores 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.detectors.injection_patterns import family_hits
from gateway.detectors.views import decoded_views
from gateway.models import embedder

ATTACKS_FILE = Path(__file__).resolve().parent.parent / "guard_data" / "injection_attacks.txt"


def heuristic_hits(text: str) -> dict[str, float]:
    """Pattern families in the text, and in its decoded readings (reported as `encoded_payload`)."""
    hits = family_hits(text)
    for _kind, view in decoded_views(text):
        for name, w in family_hits(view).items():
            if name not in hits:
                hits["encoded_payload"] = max(hits.get("encoded_payload", 0.0), w)
    return hits


class AttackSimilarity:
    """Nearest known attack phrasing, by cosine over MiniLM embeddings (built once, on first use)."""

    def __init__(self, attacks: list[str], floor: float, ceiling: float) -> None:
        self.attacks = attacks
        self.floor, self.ceiling = floor, ceiling
        self._vectors: np.ndarray | None = None

    @classmethod
    def shipped(cls, extra: list[str], floor: float, ceiling: float) -> AttackSimilarity:
        lines = [ln.strip() for ln in ATTACKS_FILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return cls(lines + list(extra), floor, ceiling)

    def build(self) -> None:
        if self._vectors is None and self.attacks:
            self._vectors = embedder.encode(self.attacks)

    def score(self, vectors: np.ndarray) -> tuple[float, int | None]:
        """(rescaled similarity in [0, 1], index of the nearest attack) for text piece vectors."""
        self.build()
        if self._vectors is None or not len(vectors):
            return 0.0, None
        sims = vectors @ self._vectors.T
        best = float(sims.max())
        nearest = int(np.unravel_index(sims.argmax(), sims.shape)[1])
        return min(1.0, max(0.0, (best - self.floor) / (self.ceiling - self.floor))), nearest
