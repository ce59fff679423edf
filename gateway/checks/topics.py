"""`topics` check: keep a request within allowed topics, or away from denied ones.

Each topic is a name plus a few example phrases (and optional keywords). A request's user text is
embedded with all-MiniLM-L6-v2 and compared with the examples; topic examples are embedded once per
policy load (in `warm`), never per request. Long text is scored piece by piece; the best piece counts. The score of a topic is the mean of the best
`top_k` example similarities, which is steadier than a single nearest example.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from gateway.checks import extras, register
from gateway.checks.base import CheckParams, Verdict
from gateway.models import embedder
from gateway.models.workers import run_model


class Topic(CheckParams):
    name: str = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list, description="whole words/phrases that match outright")
    threshold: float | None = Field(default=None, ge=-1, le=1)

    @model_validator(mode="after")
    def _has_something(self) -> Topic:
        if not self.examples and not self.keywords:
            raise ValueError(f"topic {self.name!r}: give `examples` (a few phrases) and/or `keywords`")
        return self


class TopicsParams(CheckParams):
    allowed: list[Topic] = Field(default_factory=list, description="requests must be about one of these")
    denied: list[Topic] = Field(default_factory=list, description="requests about these are acted on")
    action: Literal["block", "flag"] = "block"
    threshold: float = Field(default=0.45, ge=-1, le=1, description="default similarity threshold per topic")
    top_k: int = Field(default=3, ge=1, le=20)
    roles: list[str] = Field(default_factory=lambda: ["user"])
    last_message_only: bool = Field(default=True, description="judge the newest user turn, not the whole chat")

    @model_validator(mode="after")
    def _some_topics(self) -> TopicsParams:
        if not self.allowed and not self.denied:
            raise ValueError("declare `allowed` and/or `denied` topics")
        names = [t.name for t in (*self.allowed, *self.denied)]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"topic names must be unique: {', '.join(sorted(dup))}")
        return self


class _TopicIndex:
    def __init__(self, topics: list[Topic], default_threshold: float, top_k: int) -> None:
        self.topics = topics
        self.thresholds = [t.threshold if t.threshold is not None else default_threshold for t in topics]
        self.top_k = top_k
        self.keywords = [
            re.compile("|".join(rf"\b{re.escape(k)}\b" for k in t.keywords), re.IGNORECASE) if t.keywords else None
            for t in topics
        ]
        self.vectors: list[np.ndarray] = []

    def build(self) -> None:
        self.vectors = [embedder.encode(t.examples) for t in self.topics]

    def scores(self, pieces: np.ndarray, text: str) -> list[float]:
        out = []
        for vecs, kw in zip(self.vectors, self.keywords):
            if kw is not None and kw.search(text):
                out.append(1.0)
                continue
            if len(vecs) == 0:
                out.append(-1.0)
                continue
            sims = pieces @ vecs.T  # pieces x examples
            k = min(self.top_k, sims.shape[1])
            best = np.sort(sims, axis=1)[:, -k:].mean(axis=1)
            out.append(float(best.max()))
        return out


@register
class Topics:
    type = "topics"
    Params = TopicsParams

    def __init__(self, params: TopicsParams) -> None:
        extras.require("the topics check (MiniLM similarity to each topic's examples)", extras.EMBEDDINGS)
        self.params = params
        self.allowed = _TopicIndex(params.allowed, params.threshold, params.top_k)
        self.denied = _TopicIndex(params.denied, params.threshold, params.top_k)
        self._built = False

    overlap_safe = True  # judges only; see Pipeline.overlap_upstream

    async def warm(self) -> None:
        await run_model(self._build)

    def _build(self) -> None:
        if not self._built:
            self.allowed.build()
            self.denied.build()
            self._built = True

    async def request(self, ex) -> Verdict:
        texts = [t for _, role, t in ex.request_texts() if role in self.params.roles and t.strip()]
        if self.params.last_message_only:
            texts = texts[-1:]
        if not texts:
            return Verdict.allow("no user text")
        if not self._built:
            await run_model(self._build)
        text = "\n".join(texts)
        vectors = await embedder.encode_async(embedder.pieces(text), ex.state.setdefault(embedder.STATE_KEY, {}))
        return self.score(text, vectors)  # a few small matrix products: cheaper than a thread hop

    def judge(self, text: str, cache: dict | None = None) -> Verdict:
        """Score `text` against the topics (synchronous; also used by `gateway guard` and benchmarks)."""
        self._build()
        return self.score(text, embedder.encode_cached(embedder.pieces(text), cache))

    def score(self, text: str, pieces: np.ndarray) -> Verdict:
        details: dict = {}
        if self.params.denied:
            scores = self.denied.scores(pieces, text)
            hits = [(s, t.name) for s, t, th in zip(scores, self.params.denied, self.denied.thresholds) if s >= th]
            details["denied"] = {t.name: round(s, 4) for s, t in zip(scores, self.params.denied)}
            if hits:
                score, name = max(hits)
                return self._act(f"denied topic {name!r} (similarity {score:.2f})", score, topic=name, **details)
        if self.params.allowed:
            scores = self.allowed.scores(pieces, text)
            details["allowed"] = {t.name: round(s, 4) for s, t in zip(scores, self.params.allowed)}
            best = max(range(len(scores)), key=scores.__getitem__)
            if scores[best] < self.allowed.thresholds[best] and not any(
                    s >= th for s, th in zip(scores, self.allowed.thresholds)):
                # Score reported is "how off-topic": 1 - best on-topic similarity.
                return self._act(f"off-topic: closest allowed topic {self.params.allowed[best].name!r} "
                                 f"at {scores[best]:.2f}", round(1 - scores[best], 4), **details)
            return Verdict.allow(f"on topic {self.params.allowed[best].name!r}", score=round(1 - scores[best], 4),
                                 topic=self.params.allowed[best].name, **details)
        return Verdict.allow(score=0.0, **details)

    def _act(self, reason: str, score: float, **details) -> Verdict:
        if self.params.action == "block":
            return Verdict.block(reason, score=score, **details)
        return Verdict.flag(reason, score=score, **details)
