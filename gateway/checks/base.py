"""What a check is: a plain class whose method names say when it runs, returning a named `Verdict`.

    @register
    class DenyList:
        type = "denylist"
        Params = DenyListParams                        # pydantic model, extra="forbid"

        def __init__(self, params: DenyListParams): ...
        async def request(self, ex: Exchange) -> Verdict: ...            # request phase
        async def response(self, ex: Exchange, out: OutputSegment) -> Verdict: ...   # response phase

A check may also define `async def warm(self)` (load models before /readyz turns ready). It never
raises to block: it returns `Verdict.block(...)`. If it raises or times out anyway, the pipeline
contains it and applies the check's `on_error` setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class Action(str, Enum):
    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"


# A path into the request body naming one piece of user-controlled text,
# e.g. ("messages", 2, "content") or ("messages", 0, "content", 1, "text") or ("input", 3).
TextPath = tuple[str | int, ...]


@dataclass(slots=True)
class Verdict:
    """What a check decided. `details` holds metadata only (counts, types, spans) - never raw text."""

    action: Action = Action.ALLOW
    score: float | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # Request phase, action REDACT: new text per request path.
    rewrites: dict[TextPath, str] | None = None
    # Response phase, action REDACT: replacement for the checked output segment.
    rewrite: str | None = None

    @classmethod
    def allow(cls, reason: str = "", *, score: float | None = None, **details: Any) -> Verdict:
        return cls(Action.ALLOW, score, reason, details)

    @classmethod
    def flag(cls, reason: str, *, score: float | None = None, **details: Any) -> Verdict:
        return cls(Action.FLAG, score, reason, details)

    @classmethod
    def block(cls, reason: str, *, score: float | None = None, **details: Any) -> Verdict:
        return cls(Action.BLOCK, score, reason, details)

    @classmethod
    def redact_request(
        cls, rewrites: dict[TextPath, str], reason: str, *, score: float | None = None, **details: Any
    ) -> Verdict:
        return cls(Action.REDACT, score, reason, details, rewrites=rewrites)

    @classmethod
    def redact_output(cls, rewrite: str, reason: str, *, score: float | None = None, **details: Any) -> Verdict:
        return cls(Action.REDACT, score, reason, details, rewrite=rewrite)

    def labels(self) -> list[str]:
        """What kind of thing was found, as names the policy or the detector defines (pii entity types,
        injection pattern families, the denied topic, a denylist category): kept in the ledger so the
        console can count them. Never text from the request."""
        d = self.details
        found: set[str] = set()
        if isinstance(d.get("counts"), dict):
            found.update(map(str, d["counts"]))
        if isinstance(d.get("families"), list):
            found.update(map(str, d["families"]))
        if self.action is not Action.ALLOW:
            for key in ("topic", "category"):
                if isinstance(d.get(key), str):
                    found.add(d[key])
        return sorted(found)


@dataclass(slots=True)
class OutputSegment:
    """A piece of model output to check: a whole answer, or one sentence window of a stream."""

    choice: int
    text: str
    prior: str = ""  # output of this choice already checked (and, in streams, maybe already sent)
    final: bool = True  # no more output follows for this choice


def valid_patterns(patterns: list[str]) -> list[str]:
    """For a params field of regular expressions: each must compile (the error names the bad one)."""
    for p in patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"pattern {p!r} is not a valid regular expression: {e}") from None
    return patterns


class CheckParams(BaseModel):
    """Base for a check's own parameters: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class RequestCheck(Protocol):
    async def request(self, ex: Any) -> Verdict: ...


@runtime_checkable
class ResponseCheck(Protocol):
    async def response(self, ex: Any, out: OutputSegment) -> Verdict: ...


class CheckClass(Protocol):
    type: ClassVar[str]
    Params: ClassVar[type[CheckParams]]

    def __init__(self, params: Any) -> None: ...
