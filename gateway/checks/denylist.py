"""Deny-list check: words and regular expressions that must not go in or come out.

Actions: `block` (refuse), `redact` (replace each match with `replacement`), `flag` (annotate only).
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from pydantic import Field, field_validator

from gateway.checks import register
from gateway.checks.base import CheckParams, OutputSegment, TextPath, Verdict, valid_patterns

# Scanning is microseconds for ordinary prompts; past this size a regex pass can take milliseconds,
# so it moves to a worker thread to keep the event loop responsive.
_OFFLOAD_CHARS = 50_000


class DenyListParams(CheckParams):
    action: Literal["block", "redact", "flag"] = "block"
    words: list[str] = Field(default_factory=list, description="matched case-insensitively on word boundaries")
    patterns: list[str] = Field(default_factory=list, description="Python regular expressions")
    ignore_case: bool = True
    replacement: str = "[REDACTED]"
    category: str = "denylist"

    _patterns_compile = field_validator("patterns")(valid_patterns)


@register
class DenyList:
    type = "denylist"
    Params = DenyListParams

    @property
    def overlap_safe(self) -> bool:
        return self.params.action == "flag"  # see Pipeline.overlap_upstream

    def __init__(self, params: DenyListParams) -> None:
        if not params.words and not params.patterns:
            raise ValueError("give at least one entry in `words` or `patterns`")
        self.params = params
        alternatives = [rf"\b{re.escape(w)}\b" for w in params.words] + [f"(?:{p})" for p in params.patterns]
        self.regex = re.compile("|".join(alternatives), re.IGNORECASE if params.ignore_case else 0)

    async def request(self, ex) -> Verdict:
        slots = ex.request_texts()
        if sum(len(t) for _, _, t in slots) > _OFFLOAD_CHARS:
            return await asyncio.to_thread(self._scan_request, slots)
        return self._scan_request(slots)

    async def response(self, ex, out: OutputSegment) -> Verdict:
        if len(out.text) > _OFFLOAD_CHARS:
            return await asyncio.to_thread(self._scan_text, out.text)
        return self._scan_text(out.text)

    def _scan_request(self, slots: list[tuple[TextPath, str, str]]) -> Verdict:
        rewrites: dict[TextPath, str] = {}
        total = 0
        where: list[str] = []
        for path, _role, text in slots:
            new, n = self.regex.subn(self.params.replacement, text)
            if n:
                total += n
                rewrites[path] = new
                where.append(".".join(map(str, path)))
        return self._verdict(total, where, rewrites=rewrites)

    def _scan_text(self, text: str) -> Verdict:
        new, n = self.regex.subn(self.params.replacement, text)
        return self._verdict(n, [], rewrite=new)

    def _verdict(self, matches: int, where: list[str], *, rewrites=None, rewrite=None) -> Verdict:
        if not matches:
            return Verdict.allow()
        reason = f"{matches} {self.params.category} match(es)"
        details = {"category": self.params.category, "matches": matches}
        if where:
            details["fields"] = where
        match self.params.action:
            case "block":
                return Verdict.block(reason, score=1.0, **details)
            case "flag":
                return Verdict.flag(reason, score=1.0, **details)
            case _:
                if rewrites is not None:
                    return Verdict.redact_request(rewrites, reason, score=1.0, **details)
                return Verdict.redact_output(rewrite, reason, score=1.0, **details)
