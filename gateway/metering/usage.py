"""Usage of one request: from the upstream when it reports it (the truth), else estimated by us."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(slots=True)
class Usage:
    input: int
    output: int
    cached: int = 0  # part of `input` served from the provider's prompt cache
    cache_write: int = 0  # part of `input` written to the provider's prompt cache (Anthropic bills it apart)
    reasoning: int = 0  # part of `output` spent on hidden reasoning
    source: Literal["upstream", "estimated", "cache"] = "upstream"  # cache: a hit, nothing used upstream
    note: str | None = None  # why it is an estimate, or what was inconsistent

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input_tokens": self.input, "output_tokens": self.output,
                               "cached_tokens": self.cached, "source": self.source}
        if self.cache_write:
            out["cache_write_tokens"] = self.cache_write
        if self.reasoning:
            out["reasoning_tokens"] = self.reasoning
        if self.note:
            out["note"] = self.note
        return out


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def from_upstream(usage: Any, *, embeddings: bool = False) -> Usage | None:
    """Read an OpenAI `usage` object; None when it is missing or unusable (negative, wrong types)."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = 0 if embeddings else _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details") or {}
    cached = _count(details.get("cached_tokens") if isinstance(details, dict) else None) or 0
    # not an OpenAI field: the gateway's own upstream translations (Anthropic, Bedrock) report prompt-cache
    # writes here, as OpenAI's Responses API does in input_tokens_details
    written = _count(details.get("cache_write_tokens") if isinstance(details, dict) else None) or 0
    out_details = usage.get("completion_tokens_details") or {}
    reasoning = _count(out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None) or 0
    note = None
    if cached > prompt:
        cached, note = prompt, "cached_tokens exceeded prompt_tokens; clamped"
    if cached + written > prompt:
        written, note = prompt - cached, "cache_write_tokens exceeded the uncached prompt_tokens; clamped"
    if reasoning > completion:
        reasoning, note = completion, "reasoning_tokens exceeded completion_tokens; clamped"
    total = _count(usage.get("total_tokens"))
    if total is not None and total != prompt + completion and note is None:
        note = f"total_tokens {total} != prompt + completion {prompt + completion}; billed by the parts"
    return Usage(prompt, completion, cached, written, reasoning, "upstream", note)
