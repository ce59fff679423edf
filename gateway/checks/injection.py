"""`injection` check: prompt-injection and jailbreak attempts, in user turns and in pasted content.

Every place an attacker can plant instructions is judged as its own part: each user turn, each
block pasted into one (fenced code, quoted e-mail, <document> tags), each tool result and each
document supplied in `gateway.context`. The learned detector (gateway/detectors/injection.py)
gives each part a calibrated probability; the verdict names the part, the reading (whole, piece,
or a decoded one such as base64) and the offsets that triggered it - never the text.

If the weights file is missing or damaged the policy does not load (the error names the file),
unless it says `fallback: heuristics`: then the pattern-and-similarity scorer stands in, and every
verdict says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.checks import extras, register
from gateway.checks.base import CheckParams, Verdict
from gateway.detectors.injection import WEIGHTS, InjectionDetector, PartScore, plan
from gateway.detectors.injection_heuristic import AttackSimilarity, heuristic_hits
from gateway.detectors.linear import load_or_fallback
from gateway.models import embedder
from gateway.models.workers import run_model


# Blocks a user pastes into a message: fenced code, runs of quoted lines, document-like tags.
_PASTED = re.compile(
    r"```[^\n]*\n.*?(?:```|\Z)"
    r"|(?:^[ \t]*>.*(?:\n|\Z)){2,}"
    r"|<(document|doc|context|email|page|file|source)\b[^>]*>.*?(?:</\1>|\Z)",
    re.S | re.M | re.I)


class InjectionParams(CheckParams):
    threshold: float | None = Field(default=None, ge=0, le=1, description=(
        "act at this calibrated probability; default: the model's shipped threshold (see its model card)"))
    action: Literal["block", "flag"] = "block"
    roles: list[str] = Field(default_factory=lambda: ["user", "tool"],
                             description="message roles to check (tool results carry pasted documents)")
    scan_context: bool = Field(default=True, description="also judge each document in `gateway.context`")
    split_pasted: bool = Field(default=True, description="judge blocks pasted into a user turn on their own")
    fallback: Literal["none", "heuristics"] = Field(default="none", description=(
        "if the weights cannot load: `none` refuses to load the policy; `heuristics` uses the pattern scorer"))
    weights: str | None = Field(default=None, description="a weights file of your own (`gateway train injection --out`)")
    extra_attacks: list[str] = Field(default_factory=list, description=(
        "known attack phrasings of your own: text similar to one raises the score"))
    # Similarity to a known attack below `similarity_floor` counts as 0, at `similarity_ceiling` as 1;
    # it lifts the score by at most `embedding_weight` (extra_attacks, and the heuristic fallback).
    similarity_floor: float = Field(default=0.35, ge=0, le=1)
    similarity_ceiling: float = Field(default=0.85, ge=0, le=1)
    embedding_weight: float = Field(default=0.6, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class Part:
    label: str  # e.g. "messages[2].content", "messages[1].content block 1 (code)", "context[faq-3]"
    text: str


@register
class Injection:
    type = "injection"
    Params = InjectionParams
    overlap_safe = True  # judges only; see Pipeline.overlap_upstream

    def __init__(self, params: InjectionParams) -> None:
        extras.require("the injection check (a learned detector over MiniLM embeddings)", extras.EMBEDDINGS)
        if params.similarity_ceiling <= params.similarity_floor:
            raise ValueError("similarity_ceiling must be above similarity_floor")
        self.params = params
        self.detector: InjectionDetector | None = load_or_fallback(
            InjectionDetector.load, Path(params.weights) if params.weights else WEIGHTS, check="injection",
            fallback=params.fallback, instead="run on patterns alone")
        self.threshold = params.threshold if params.threshold is not None else (
            self.detector.threshold if self.detector else 0.5)
        lo, hi = params.similarity_floor, params.similarity_ceiling
        self.similarity: AttackSimilarity | None = None
        if self.detector is None:
            self.similarity = AttackSimilarity.shipped(params.extra_attacks, lo, hi)
        elif params.extra_attacks:
            self.similarity = AttackSimilarity(list(params.extra_attacks), lo, hi)

    async def warm(self) -> None:
        await run_model(self._build)

    def _build(self) -> None:
        embedder.load()
        if self.similarity is not None:
            self.similarity.build()

    # ---- which text ---------------------------------------------------------------------------
    def parts(self, ex) -> list[Part]:
        out: list[Part] = []
        for path, role, text in ex.request_texts():
            if role not in self.params.roles or not text.strip():
                continue
            label = _label(path)
            if role == "user" and self.params.split_pasted:
                rest, k = [], 0
                last = 0
                for m in _PASTED.finditer(text):
                    k += 1
                    kind = "code" if m.group().startswith("```") else "quote" if m.group().lstrip().startswith(">") else "document"
                    out.append(Part(f"{label} block {k} ({kind})", m.group()))
                    rest.append(text[last:m.start()])
                    last = m.end()
                rest.append(text[last:])
                text = "\n".join(r for r in rest if r.strip()) if k else text
                if not text.strip():
                    continue
            out.append(Part(label, text))
        if self.params.scan_context and ex.options.context:
            out.extend(Part(f"context[{d.id}]", d.text) for d in ex.options.context if d.text.strip())
        return out

    async def request(self, ex) -> Verdict:
        parts = self.parts(ex)
        if not parts:
            return Verdict.allow("no text to check")
        cache = ex.state.setdefault(embedder.STATE_KEY, {})
        if self.detector is None:
            return await run_model(self._judge_heuristic, parts, cache)
        if self.similarity is not None and self.similarity._vectors is None:
            await run_model(self.similarity.build)
        # Reading the parts and scoring them is Python work (off the loop); embedding their pieces
        # goes through the shared batcher, so concurrent requests share one model pass.
        plans = await run_model(lambda: [plan(p.text) for p in parts])
        vectors = await embedder.encode_async([t for pl in plans for t in pl.texts_to_embed()], cache)
        return await run_model(self._score_parts, parts, plans, vectors)

    def judge(self, text: str, cache: dict | None = None) -> Verdict:
        """One text as one user turn (benchmarks, `gateway guard`)."""
        return self.judge_parts([Part("text", text)], cache)

    # ---- scoring -----------------------------------------------------------------------------
    def judge_parts(self, parts: list[Part], cache: dict | None = None) -> Verdict:
        """Synchronous scoring (benchmarks, `gateway guard`)."""
        if self.detector is None:
            return self._judge_heuristic(parts, cache)
        plans = [plan(p.text) for p in parts]
        texts = [t for pl in plans for t in pl.texts_to_embed()]
        return self._score_parts(parts, plans, embedder.encode_cached(texts, cache))

    def _score_parts(self, parts: list[Part], plans: list, vectors) -> Verdict:
        scores: list[tuple[Part, PartScore]] = []
        pos = 0
        for part, pl in zip(parts, plans):
            n = len(pl.texts_to_embed())
            s = self.detector.score_plan(pl, vectors[pos:pos + n])
            if self.similarity is not None:  # the policy's own known attacks
                e, _ = self.similarity.score(vectors[pos:pos + n])
                s.probability = 1 - (1 - s.probability) * (1 - self.params.embedding_weight * e)
            pos += n
            scores.append((part, s))
        part, best = max(scores, key=lambda x: x[1].probability)
        score = round(best.probability, 4)
        ranked = sorted(scores, key=lambda x: -x[1].probability)
        details = {"detector": "learned", "part": part.label, **best.to_json(),
                   "parts": [{"part": p.label, **s.to_json()} for p, s in ranked[:5]]}
        details.pop("probability")
        return self._decide(score, details, best.families)

    def _judge_heuristic(self, parts: list[Part], cache: dict | None) -> Verdict:
        per = []
        for part in parts:
            hits = heuristic_hits(part.text)
            vectors = embedder.encode_cached(embedder.pieces(part.text), cache)
            e, nearest = self.similarity.score(vectors)
            h = max(hits.values(), default=0.0)
            per.append((round(1 - (1 - h) * (1 - self.params.embedding_weight * e), 4), part, sorted(hits), e, nearest))
        score, part, hits, e, nearest = max(per, key=lambda x: x[0])
        details = {"detector": "heuristics", "part": part.label, "families": hits, "embedding": round(e, 4)}
        if nearest is not None and e > 0:
            details["nearest_attack"] = nearest  # index into the attack list, not its text
        return self._decide(score, details, hits)

    def _decide(self, score: float, details: dict, families: list[str]) -> Verdict:
        if score < self.threshold:
            return Verdict.allow(score=score, **details)
        reason = (f"prompt injection suspected in {details['part']} (score {score:.2f}"
                  f"{'; ' + ', '.join(families) if families else ''})")
        if self.params.action == "block":
            return Verdict.block(reason, score=score, **details)
        return Verdict.flag(reason, score=score, **details)


def _label(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out

