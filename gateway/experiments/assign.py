"""Deterministic, sticky assignment: sha256(salt:unit) -> a point in [0, 1) -> the variant whose
cumulative weight range holds it.

Rule for weight changes: ranges follow the variants' order in the file, so changing weights moves
only the units between an old and a new range boundary; every other unit keeps its variant. To move
as few units as possible, add new variants at the end and take their weight from the last ones. A
removed variant's units fall into the ranges of the variants that remain.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from gateway.experiments.config import Experiment, Variant

_SCALE = float(1 << 64)


def bucket(salt: str, unit: str) -> float:
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def unit_hash(salt: str, unit: str) -> str:
    """What the ledger stores instead of the unit id (often a user id): stable, not reversible."""
    return hashlib.sha256(f"unit:{salt}:{unit}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str
    variant: Variant
    unit_hash: str

    def record(self) -> dict[str, str]:
        return {"name": self.experiment, "variant": self.variant.name}


class Splitter:
    """One experiment, ready to assign: cumulative boundaries computed once per load."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.salt = exp.salt or exp.name
        self._bounds: list[float] = []
        acc = 0.0
        for v in exp.variants:
            acc += v.weight
            self._bounds.append(acc)
        self._bounds[-1] = 1.0  # guard against float rounding leaving a gap at the top

    def active(self, now: dt.datetime) -> bool:
        return (self.exp.start is None or now >= self.exp.start) and (self.exp.stop is None or now < self.exp.stop)

    def assign(self, unit: str) -> Assignment:
        point = bucket(self.salt, unit)
        index = bisect.bisect_right(self._bounds, point)
        # Zero-weight variants have empty ranges; bisect_right never lands in them.
        return Assignment(self.exp.name, self.exp.variants[min(index, len(self.exp.variants) - 1)],
                          unit_hash(self.salt, unit))


def unit_of(spec: str, headers: Any, body: dict[str, Any], user_id: str | None, key_name: str | None) -> str | None:
    """The unit id for `spec` (header:<name> | user | gateway.user_id | key), or None if absent."""
    if spec.startswith("header:"):
        return headers.get(spec[7:]) or None
    if spec == "user":
        value = body.get("user")
        return value if isinstance(value, str) and value else None
    if spec == "gateway.user_id":
        return user_id or None
    return key_name
