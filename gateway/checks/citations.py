"""`citations` check: do the answer's citation markers point at supplied documents that support the
cited sentence?

Markers: `[1]`, `[2, 3]`, `[doc-id]`, `(source: doc-id)` by default, or the policy's own `pattern`
(its first group captures the reference; commas separate several). A number refers to the document
with that id, else to the n-th document (1-based). Each cited sentence is scored with the
faithfulness scorer against the cited documents only.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.checks import register
from gateway.checks.base import CheckParams, OutputSegment, Verdict
from gateway.faithfulness import documents
from gateway.faithfulness.scorer import Context, Weights, content_words, score_claims, split_claims
from gateway.models.workers import run_model

DEFAULT_PATTERN = r"\[([A-Za-z0-9_.:#/-]+(?:\s*,\s*[A-Za-z0-9_.:#/-]+)*)\]|\((?:source|src|ref)s?:\s*([^)]+?)\)"
# A marker that opened and never closed, or closed empty: reported, never fatal.
_MALFORMED = re.compile(r"\[\s*\]|\((?:source|src|ref)s?:\s*\)|\[[A-Za-z0-9_.:#/-]{1,40}(?=\s|$)(?!\])")


class CitationsParams(CheckParams):
    pattern: str = Field(default=DEFAULT_PATTERN, description="regex; group 1 (or the first matched group) = reference")
    threshold: float = Field(default=0.6, ge=0, le=1, description="a cited sentence supported below this is a violation")
    action: Literal["flag", "block", "redact"] = "flag"
    replacement: str = "[removed: citation does not support this]"
    require_citations: bool = Field(default=False, description="sentences with claims but no marker are violations")
    context_from: list[Literal["gateway", "tools"]] = Field(default_factory=lambda: ["gateway", "tools"])
    context_field: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, p: str) -> str:
        try:
            rx = re.compile(p)
        except re.error as e:
            raise ValueError(f"pattern is not a valid regular expression: {e}") from None
        if rx.groups < 1:
            raise ValueError("pattern needs a group capturing the document reference, e.g. \\[(\\d+)\\]")
        return p


@register
class Citations:
    type = "citations"
    Params = CitationsParams

    def __init__(self, params: CitationsParams) -> None:
        self.params = params
        self.rx = re.compile(params.pattern)
        self.weights = Weights()

    async def response(self, ex, out: OutputSegment) -> Verdict:
        docs = documents.collect(ex, self.params.context_from, self.params.context_field)
        if not docs:
            return Verdict.allow("skipped: no context", skipped="no context")
        return await run_model(self.judge, out.text, docs)

    def judge(self, answer: str, docs: list[documents.Doc]) -> Verdict:
        by_id = {d.id: d for d in docs}
        missing: list[dict[str, Any]] = []
        unsupported: list[dict[str, Any]] = []
        uncited: list[dict[str, Any]] = []
        cited = 0
        for i, (s, e) in enumerate(split_claims(answer)):
            sentence = answer[s:e]
            refs, spans = [], []
            for m in self.rx.finditer(sentence):
                ref = next((g for g in m.groups() if g), "")
                refs += [r.strip() for r in ref.split(",") if r.strip()]
                spans.append((m.start(), m.end()))
            claim = _strip(sentence, spans)
            if not refs:
                if self.params.require_citations and content_words(claim, drop_fillers=True):
                    uncited.append({"index": i, "start": s, "end": e})
                continue
            cited += 1
            targets, unknown = [], []
            for ref in refs:
                doc = by_id.get(ref) or (docs[int(ref) - 1] if ref.isdigit() and 0 < int(ref) <= len(docs) else None)
                (targets if doc else unknown).append(doc or ref)
            if unknown:
                missing.append({"index": i, "start": s, "end": e, "refs": unknown[:5]})
            if targets:
                result = score_claims(claim, Context([d.text for d in targets]), self.weights)
                if result.claims and result.score < self.params.threshold:
                    unsupported.append({"index": i, "start": s, "end": e, "support": round(result.score, 4),
                                        "cited": [d.id for d in targets][:5]})
        malformed = len(_MALFORMED.findall(answer))
        details = {"cited_sentences": cited, "missing_documents": missing, "unsupported": unsupported,
                   "malformed_markers": malformed}
        if self.params.require_citations:
            details["uncited"] = uncited
        problems = missing + unsupported + uncited
        if not problems:
            return Verdict.allow(score=0.0, **details)
        score = round(len({p["index"] for p in problems}) / max(1, len(split_claims(answer))), 4)
        reason = (f"{len(missing)} citation(s) to unknown documents, {len(unsupported)} cited sentence(s) "
                  f"the cited documents do not support" + (f", {len(uncited)} uncited" if uncited else ""))
        match self.params.action:
            case "block":
                return Verdict.block(reason, score=score, **details)
            case "redact":
                text = answer
                for p in sorted(problems, key=lambda p: p["start"], reverse=True):
                    text = text[: p["start"]] + self.params.replacement + text[p["end"]:]
                return Verdict.redact_output(text, reason, score=score, **details)
            case _:
                return Verdict.flag(reason, score=score, **details)


def _strip(sentence: str, spans: list[tuple[int, int]]) -> str:
    for s, e in reversed(spans):
        sentence = sentence[:s] + sentence[e:]
    return sentence
