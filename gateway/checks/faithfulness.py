"""`faithfulness` check: is the answer supported by the documents the request supplied?

Documents come from `gateway.context` ([{id, text}]), `tool` messages, and/or a request field named
in the policy. Each answer sentence is scored (see gateway/faithfulness/scorer.py), and the learned
model (gateway/faithfulness/learned.py) turns those signals into a calibrated probability that the
answer is supported; the verdict gives that score, per-claim probabilities and the unsupported
claims (positions, not text). A missing or damaged weights file stops the policy from loading
unless it says `fallback: heuristics` (then the claim scorer's own score decides). Optionally an
LLM judge, called through the gateway's own routing and metering, verifies the claims: alone
(`judge.mode: only`) or for borderline scores (`confirm`).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from gateway.checks import extras, register
from gateway.checks.base import CheckParams, OutputSegment, Verdict
from gateway.detectors.linear import load_or_fallback
from gateway.faithfulness import documents, learned
from gateway.faithfulness.scorer import Context, Result, Weights, claim_texts, content_words, score_claims
from gateway.model_calls import MODEL_CALLER
from gateway.models import embedder
from gateway.models.workers import run_model

_STATE = "faithfulness.context"


class JudgeParams(CheckParams):
    model: str = Field(min_length=1, description="a model name from gateway.yaml")
    mode: Literal["confirm", "only"] = "confirm"
    band: tuple[float, float] = Field(default=(0.2, 0.6), description="confirm: scores in this band go to the judge")
    max_tokens: int = Field(default=400, ge=16, le=4000)


class FaithfulnessParams(CheckParams):
    threshold: float | None = Field(default=None, ge=0, le=1, description=(
        "act when the answer's (or streamed window's) probability of being supported is below this; default: "
        "the model's calibrated threshold (gateway/guard_data/faithfulness-model.md), 0.78 with the heuristic fallback"))
    fallback: Literal["none", "heuristics"] = Field(default="none", description=(
        "if the weights cannot load: `none` refuses to load the policy; `heuristics` scores with the claim scorer"))
    weights: str | None = Field(default=None, description="a weights file of your own (`gateway train faithfulness --out`)")
    claim_threshold: float | None = Field(default=None, ge=0, le=1,
                                          description="a claim below is 'unsupported' (default: threshold)")
    action: Literal["flag", "block", "redact"] = "flag"
    replacement: str = "[removed: not supported by the provided documents]"
    context_from: list[Literal["gateway", "tools"]] = Field(default_factory=lambda: ["gateway", "tools"])
    context_field: str | None = Field(default=None, description="dotted path in the request body, e.g. metadata.documents")
    on_missing_context: Literal["allow", "block"] = "allow"
    use_embeddings: bool = True
    max_context_sentences: int = Field(default=300, ge=10, le=5000,
                                       description="embed at most this many context sentences (most relevant first)")
    judge: JudgeParams | None = None

    @model_validator(mode="after")
    def _sources(self) -> FaithfulnessParams:
        if not self.context_from and not self.context_field:
            raise ValueError("give `context_from` and/or `context_field`: where the documents come from")
        return self


class JudgeError(RuntimeError):
    """The judge's answer was not the JSON verdict asked for (contained per the check's on_error)."""


@register
class Faithfulness:
    type = "faithfulness"
    Params = FaithfulnessParams

    def __init__(self, params: FaithfulnessParams) -> None:
        if params.use_embeddings:
            extras.require("the faithfulness check with `use_embeddings: true` (its semantic part)", extras.EMBEDDINGS,
                           "or `use_embeddings: false` (lexical, number, name and contradiction signals only)")
        self.params = params
        self.weights = Weights()
        self.model: learned.FaithfulnessModel | None = load_or_fallback(
            learned.FaithfulnessModel.load, Path(params.weights) if params.weights else learned.WEIGHTS,
            check="faithfulness", fallback=params.fallback, instead="score with the claim scorer alone")
        default = self.model.threshold if self.model else 0.78
        self.threshold = params.threshold if params.threshold is not None else default
        self.claim_threshold = params.claim_threshold if params.claim_threshold is not None else self.threshold

    async def warm(self) -> None:
        if self.params.use_embeddings:
            await run_model(embedder.load)

    # ---- documents ------------------------------------------------------------------------------
    def documents(self, ex) -> list[str]:
        return [d.text for d in documents.collect(ex, self.params.context_from, self.params.context_field)]

    @staticmethod
    def question(ex) -> str:
        users = [t for _, role, t in ex.request_texts() if role == "user"]
        return users[-1] if users else ""

    # ---- preparing while the model works ------------------------------------------------------
    def prepare(self, ex) -> None:
        """Start reading and embedding the documents now, off the loop: the answer is not needed for
        that, and a real model takes long enough for it to finish before the first sentence arrives."""
        if _STATE not in ex.state:
            docs = self.documents(ex)
            if docs:
                ex.state[_STATE] = asyncio.ensure_future(self._prepare(docs, self.question(ex)))

    async def _prepare(self, docs: list[str], question: str) -> Context:
        ctx = await run_model(_prepared_context, docs, question)
        if self.params.use_embeddings and len(ctx.sentences) <= self.params.max_context_sentences:
            ctx.embedding = asyncio.ensure_future(run_model(self._embed_context, ctx, ""))
        return ctx

    async def _context(self, ex, docs: list[str]) -> Context:
        task = ex.state.get(_STATE)
        if task is None:
            task = ex.state[_STATE] = asyncio.ensure_future(self._prepare(docs, self.question(ex)))
        return await task

    # ---- response phase -------------------------------------------------------------------------
    async def response(self, ex, out: OutputSegment) -> Verdict:
        docs = self.documents(ex)
        if not docs:
            if self.params.on_missing_context == "block":
                return Verdict.block("skipped: no context supplied, and the policy requires it", skipped="no context")
            return Verdict.allow("skipped: no context", skipped="no context")
        if not content_words(out.text, drop_fillers=True):
            return Verdict.allow("nothing to check", claims=0)
        ctx = await self._context(ex, docs)
        result = score_claims(out.text, ctx, self.weights)  # lexical + agreement: sub-millisecond per sentence
        if self.params.use_embeddings and any(c.lexical < 1.0 for c in result.claims):
            # Only now wait for the document embeddings: a sentence the words fully support never does.
            if ctx.embedding is not None:
                try:
                    await ctx.embedding
                except Exception:  # preparing failed: scoring embeds the documents itself (or fails there)
                    ctx.vectors = None
            result = await run_model(self._score, out.text, ctx, result)
        probability, claim_probs = self.learned(out.text, ctx, result)
        verdict_score = probability
        judged: dict[str, Any] | None = None
        if self.params.judge is not None:
            lo, hi = self.params.judge.band
            if self.params.judge.mode == "only" or lo <= probability < hi:
                judged = await self._ask_judge(ex, out.text, result, ctx)
                verdict_score = judged["score"]
        return self._verdict(out.text, result, claim_probs, verdict_score, judged)

    def score(self, answer: str, docs: list[str], question: str = "") -> float:
        """The answer's score, synchronously (benchmarks and the CLI): the probability that the
        documents support it (the claim scorer's score with the heuristic fallback)."""
        ctx = _prepared_context(docs, question)
        return self.learned(answer, ctx, self._score(answer, ctx))[0]

    def learned(self, answer: str, ctx: Context, result: Result) -> tuple[float, list[float]]:
        """(answer probability, per-claim probabilities) from the scorer's result; the scorer's own
        score and supports with the heuristic fallback. A few dot products: no thread hop needed."""
        if self.model is None or not result.claims:
            return result.score, [c.support for c in result.claims]
        grams = getattr(ctx, "grams", None) or _grams(ctx)
        per = [learned.claim_features(answer, c, ctx, grams) for c in result.claims]
        supports = [c.support for c in result.claims]
        prob = self.model.probability(learned.answer_features(per, result.score, supports))
        claims = [self.model.probability(learned.answer_features([f], c, [c])) for f, c in zip(per, supports)]
        return prob, claims

    def _score(self, answer: str, ctx: Context, lexical: Result | None = None) -> Result:
        """`lexical`: the answer's score without the semantic part, if the caller has it already."""
        if lexical is None:
            lexical = score_claims(answer, ctx, self.weights)
        if not self.params.use_embeddings:
            return lexical
        # Similarity can only lift a claim the words do not fully support: embed just those claims.
        need = [i for i, c in enumerate(lexical.claims) if c.lexical < 1.0]
        if not need:
            return lexical
        self._embed_context(ctx, answer)
        texts = claim_texts(answer, ctx.question)
        vectors = np.zeros((len(texts), 384), dtype=np.float32)
        vectors[need] = embedder.encode([texts[i] for i in need])
        return score_claims(answer, ctx, self.weights, vectors)

    def _embed_context(self, ctx: Context, answer: str) -> None:
        if ctx.vectors is not None:
            return
        sentences = ctx.sentences
        if len(sentences) > self.params.max_context_sentences:
            # Huge contexts: embed the sentences sharing most words with the answer (bounded cost);
            # the lexical part still reads every document in full.
            words = set(content_words(answer))
            ranked = sorted(sentences, key=lambda s: -len(words & set(content_words(s))))
            sentences = ranked[: self.params.max_context_sentences]
        ctx.vectors = embedder.encode(sentences) if sentences else np.zeros((0, 384), dtype=np.float32)

    # ---- judge ----------------------------------------------------------------------------------
    async def _ask_judge(self, ex, answer: str, result: Result, ctx: Context) -> dict[str, Any]:
        caller = ex.state.get(MODEL_CALLER)
        if caller is None:
            raise JudgeError("no model caller on this request (judge mode needs the gateway's routing)")
        claims = [answer[c.start:c.end] for c in result.claims]
        numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(claims))
        docs = "\n\n".join(f"[doc {i}] {d}" for i, d in enumerate(ctx.docs))
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Documents:\n{docs}\n\nQuestion: {ctx.question}\n\nClaims:\n{numbered}"},
        ]
        text = await caller.chat(self.params.judge.model, messages, temperature=0,
                                 max_tokens=self.params.judge.max_tokens)
        verdict = parse_judge(text, len(claims))
        verdict["call"] = ex.state["judge_calls"][-1]  # the judge request's id, tokens and cost
        return verdict

    # ---- verdict --------------------------------------------------------------------------------
    def _verdict(self, answer: str, result: Result, claim_probs: list[float], score: float,
                 judged: dict | None) -> Verdict:
        unsupported = [i for i, p in enumerate(claim_probs) if p < self.claim_threshold]
        if judged is not None:
            unsupported = judged["unsupported"]
        details: dict[str, Any] = {
            "claims": len(result.claims),
            "unsupported": [{"index": i, "start": result.claims[i].start, "end": result.claims[i].end,
                             "probability": round(claim_probs[i], 4)} for i in unsupported
                            if i < len(result.claims)],
            "per_claim": [{**c.to_json(), "probability": round(p, 4)} for c, p in zip(result.claims, claim_probs)][:50],
            "scorer_score": round(result.score, 4),
            "detector": "learned" if self.model is not None else "heuristics",
        }
        if judged is not None:
            details["judge"] = {k: v for k, v in judged.items() if k != "unsupported"}
        score = round(score, 4)
        if score >= self.threshold and not (judged is not None and unsupported):
            return Verdict.allow(score=score, **details)
        reason = f"answer not supported by the documents (score {score:.2f}; {len(unsupported)} unsupported claim(s))"
        match self.params.action:
            case "block":
                return Verdict.block(reason, score=score, **details)
            case "redact" if unsupported:
                text = answer
                for i in sorted(unsupported, reverse=True):
                    c = result.claims[i]
                    text = text[: c.start] + self.params.replacement + text[c.end:]
                return Verdict.redact_output(text, reason, score=score, **details)
            case _:
                return Verdict.flag(reason, score=score, **details)


def _grams(ctx: Context) -> learned.Grams:
    ctx.grams = learned.Grams(ctx)  # type: ignore[attr-defined]
    return ctx.grams  # type: ignore[attr-defined]


def _prepared_context(docs: list[str], question: str) -> Context:
    """The documents' word sets, sentences and n-grams (built once per request, off the loop)."""
    ctx = Context(docs, question)
    _grams(ctx)
    return ctx


JUDGE_SYSTEM = (
    "You check whether claims are supported by documents. A claim is supported only if the documents "
    "state it or directly imply it; claims with facts, numbers or names the documents lack are not "
    "supported. Reply with JSON only, no prose: "
    '{"supported": [claim numbers], "unsupported": [claim numbers], "confidence": number between 0 and 1}'
)

_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_judge(text: str, n_claims: int) -> dict[str, Any]:
    """The judge's JSON verdict -> {score, unsupported, confidence}. Raises JudgeError if unusable."""
    m = _JSON_OBJECT.search(text or "")
    if not m:
        raise JudgeError("judge reply holds no JSON object")
    try:
        data = json.loads(m.group())
    except json.JSONDecodeError as e:
        raise JudgeError(f"judge reply is not valid JSON: {e.msg}") from None
    bad = data.get("unsupported")
    good = data.get("supported", [])
    if not isinstance(bad, list) or not isinstance(good, list) or not all(
            isinstance(i, int) and 0 <= i < n_claims for i in (*bad, *good)):
        raise JudgeError("judge JSON lacks valid `supported` / `unsupported` claim numbers")
    confidence = data.get("confidence", 1.0)
    if not isinstance(confidence, (int, float)):
        raise JudgeError("judge JSON `confidence` is not a number")
    score = 1.0 - len(set(bad)) / n_claims if n_claims else 1.0
    return {"score": score, "unsupported": sorted(set(bad)), "confidence": float(confidence)}
