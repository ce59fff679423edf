"""The detection result: a typed span with a score and the recognizer that found it. No text kept."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Entity:
    start: int
    end: int
    type: str
    score: float
    source: str  # recognizer name, for audits and for the refinement rules

    def overlaps(self, other: Entity) -> bool:
        return self.start < other.end and other.start < self.end

    def to_json(self) -> dict:
        return {"type": self.type, "start": self.start, "end": self.end, "score": round(self.score, 3)}
