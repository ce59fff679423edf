"""`safety` check on answers: categories of forbidden content (words and patterns) and personal
data (the `pii` check's engine), each with its own action; redactions use the configured text."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.checks import register
from gateway.checks.base import Action, CheckParams, OutputSegment, Verdict
from gateway.checks.denylist import DenyList, DenyListParams
from gateway.checks.pii import Pii, PiiParams


class Category(CheckParams):
    name: str = Field(min_length=1)
    words: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    action: Literal["flag", "block", "redact"] = "block"


class SafetyParams(CheckParams):
    categories: list[Category] = Field(default_factory=list)
    pii: dict[str, Any] | None = Field(default=None, description="`pii` check parameters, applied to the answer")
    replacement: str = "[removed]"

    @model_validator(mode="after")
    def _something(self) -> SafetyParams:
        if not self.categories and self.pii is None:
            raise ValueError("give `categories` and/or `pii`")
        return self


_RANK = {Action.ALLOW: 0, Action.FLAG: 1, Action.REDACT: 2, Action.BLOCK: 3}


@register
class Safety:
    type = "safety"
    Params = SafetyParams

    def __init__(self, params: SafetyParams) -> None:
        self.params = params
        self.lists = [DenyList(DenyListParams(action=c.action, words=c.words, patterns=c.patterns,
                                              replacement=params.replacement, category=c.name))
                      for c in params.categories]
        self.pii = Pii(PiiParams(**params.pii)) if params.pii is not None else None

    async def warm(self) -> None:
        if self.pii is not None:
            await self.pii.warm()

    async def response(self, ex, out: OutputSegment) -> Verdict:
        text = out.text
        worst = Verdict.allow()
        found: dict[str, Any] = {}
        for check in [*self.lists, *([self.pii] if self.pii else [])]:
            v = await check.response(ex, OutputSegment(out.choice, text, out.prior, out.final))
            if v.action is Action.ALLOW:
                continue
            name = check.params.category if isinstance(check, DenyList) else "pii"
            found[name] = {"action": v.action.value, **{k: v.details[k] for k in ("matches", "counts") if k in v.details}}
            if v.action is Action.REDACT and v.rewrite is not None:
                text = v.rewrite if isinstance(check, DenyList) else _pii_replace(v, text, self.params.replacement)
            if _RANK[v.action] > _RANK[worst.action]:
                worst = v
        if not found:
            return Verdict.allow()
        reason = "answer contains " + ", ".join(f"{k} ({v['action']})" for k, v in found.items())
        if worst.action is Action.BLOCK:
            return Verdict.block(reason, score=1.0, categories=found)
        if text != out.text:
            return Verdict.redact_output(text, reason, score=1.0, categories=found)
        return Verdict.flag(reason, score=1.0, categories=found)


def _pii_replace(v: Verdict, original: str, replacement: str) -> str:
    """The pii check redacts with `<TYPE>` placeholders; safety uses its own replacement text."""
    text = original
    for e in sorted(v.details.get("entities", []), key=lambda e: e["start"], reverse=True):
        if e["action"] not in ("block", "flag"):
            text = text[: e["start"]] + replacement + text[e["end"]:]
    return text
