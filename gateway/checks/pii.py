"""`pii` check: personal data in prompts (and answers), found by presidio plus our recognizers.

Per entity type an action: block, redact (`<EMAIL_ADDRESS>`), mask, hash, pseudonymize (`<PERSON_1>`,
restored in the answer) or flag. The verdict records types, counts, fields and positions, never values.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.checks import extras, register
from gateway.checks.base import CheckParams, OutputSegment, TextPath, Verdict, valid_patterns
from gateway.models.workers import run_model
from gateway.pii.anonymize import Pseudonyms, hashed, mask, redact
from gateway.detectors.linear import WeightsError
from gateway.pii.engine import KNOWN_TYPES, CustomRecognizer, PiiEngine, nlp_batcher
from gateway.pii.entities import Entity

PiiAction = Literal["block", "redact", "mask", "hash", "pseudonymize", "flag"]
PSEUDONYMS = "pii.pseudonyms"  # Exchange.state key: the request's Pseudonyms, for restoring answers


class EntityRule(CheckParams):
    action: PiiAction = "redact"
    threshold: float | None = Field(default=None, ge=0, le=1)


class RecognizerSpec(CheckParams):
    entity: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="UPPER_SNAKE name of the entity type")
    patterns: list[str] = Field(default_factory=list)
    words: list[str] = Field(default_factory=list)
    score: float = Field(default=0.9, ge=0, le=1)

    _patterns_compile = field_validator("patterns")(valid_patterns)

    @model_validator(mode="after")
    def _something(self) -> RecognizerSpec:
        if not self.patterns and not self.words:
            raise ValueError("give `patterns` or `words`")
        return self


_DEFAULT_ENTITIES = {t: EntityRule() for t in (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "PERSON", "LOCATION",
    "US_PASSPORT", "US_DRIVER_LICENSE", "US_BANK_NUMBER", "CRYPTO",
)}


class PiiParams(CheckParams):
    mode: Literal["ner", "regex"] = Field(
        default="ner", description="ner: spaCy model + patterns (names, places, orgs); regex: patterns only, faster")
    threshold: float = Field(default=0.5, ge=0, le=1, description="default minimum score per entity")
    precision: Literal["recall", "balanced", "strict"] = Field(default="balanced", description=(
        "look-alike handling: recall = every candidate stands; balanced = versions, file names, order / ticket "
        "numbers, code names and products are suppressed (rules + learned filter); strict = fewer name guesses"))
    entities: dict[str, EntityRule | PiiAction] = Field(default_factory=lambda: dict(_DEFAULT_ENTITIES))
    allow: list[str] = Field(default_factory=list, description="values never acted on (case-insensitive)")
    allow_patterns: list[str] = Field(default_factory=list)
    recognizers: list[RecognizerSpec] = Field(default_factory=list)
    roles: list[str] | None = Field(default=None, description="message roles to check; default: all")
    mask_char: str = Field(default="*", min_length=1, max_length=1)
    mask_keep_last: int = Field(default=0, ge=0, le=8)
    hash_salt: str = ""

    @model_validator(mode="after")
    def _known_entities(self) -> PiiParams:
        custom = {r.entity for r in self.recognizers}
        unknown = sorted(set(self.entities) - KNOWN_TYPES - custom)
        if unknown:
            raise ValueError(
                f"unknown entity type(s) {', '.join(unknown)} in `entities`; known: {', '.join(sorted(KNOWN_TYPES))} "
                "(or declare one under `recognizers`)")
        if not self.entities:
            raise ValueError("`entities` is empty: name at least one entity type and its action")
        return self

    _allow_patterns_compile = field_validator("allow_patterns")(valid_patterns)

    def rule(self, kind: str) -> EntityRule | None:
        rule = self.entities.get(kind)
        return EntityRule(action=rule) if isinstance(rule, str) else rule


@register
class Pii:
    type = "pii"
    Params = PiiParams

    def __init__(self, params: PiiParams) -> None:
        if params.mode == "ner":
            extras.require("the pii check with `mode: ner` (names, places, organisations)", extras.NER,
                           "or `mode: regex` (structured identifiers only), which needs presidio alone")
        else:
            extras.require("the pii check", extras.PRESIDIO)
        self.params = params
        self.rules = {k: params.rule(k) for k in params.entities}
        try:
            self.engine = PiiEngine(mode=params.mode, tier=params.precision, custom=tuple(
                CustomRecognizer(r.entity, tuple(r.patterns), tuple(r.words), r.score) for r in params.recognizers))
        except WeightsError as e:  # the policy fails to load, naming the file
            raise ValueError(f"pii span filter weights: {e} (or set `precision: recall`, which needs no weights)") from None
        self.allow = {a.lower() for a in params.allow}
        self.allow_rx = re.compile("|".join(f"(?:{p})" for p in params.allow_patterns)) if params.allow_patterns else None

    @property
    def overlap_safe(self) -> bool:
        """Only a flag-only pii check lets the upstream call start before it finished: any other
        action exists to keep the data from leaving (see Pipeline.overlap_upstream)."""
        return all(r.action == "flag" for r in self.rules.values())

    async def warm(self) -> None:
        # The e-mail makes presidio's validator build its public-suffix index now, not on a request.
        await run_model(self.engine.analyze, "Warm-up: John Smith (john@example.com) lives at 12 Baker Street, London.")

    # ---- request phase --------------------------------------------------------------------------
    async def request(self, ex) -> Verdict:
        slots = [s for s in ex.request_texts() if self.params.roles is None or s[1] in self.params.roles]
        if not slots:
            return Verdict.allow("no text to check")
        found = await self._detect_async([text for _, _, text in slots])
        pseudonyms: Pseudonyms | None = ex.state.get(PSEUDONYMS)
        rewrites: dict[TextPath, str] = {}
        report: list[dict] = []
        block = flag = False
        for (path, _role, text), ents in zip(slots, found):
            if not ents:
                continue
            where = ".".join(map(str, path))
            out = text
            for e in sorted(ents, key=lambda x: x.start, reverse=True):
                action = self.rules[e.type].action
                report.append({**e.to_json(), "field": where, "action": action})
                if action == "block":
                    block = True
                    continue
                if action == "flag":
                    flag = True
                    continue
                if action == "pseudonymize":
                    if pseudonyms is None:
                        pseudonyms = ex.state[PSEUDONYMS] = Pseudonyms.for_texts([t for _, _, t in slots])
                    new = pseudonyms.placeholder(e.type, text[e.start:e.end])
                else:
                    new = self._replace(e, text[e.start:e.end], action)
                out = out[: e.start] + new + out[e.end:]
            if out != text:
                rewrites[path] = out
        return self._verdict(report, block, flag, rewrites=rewrites)

    # ---- response phase -------------------------------------------------------------------------
    async def response(self, ex, out: OutputSegment) -> Verdict:
        (ents,) = await self._detect_async([out.text])
        report, block, flag, text = [], False, False, out.text
        for e in sorted(ents, key=lambda x: x.start, reverse=True):
            action = self.rules[e.type].action
            report.append({**e.to_json(), "action": action})
            if action == "block":
                block = True
            elif action == "flag":
                flag = True
            else:  # a placeholder in an answer would mean nothing to the reader: pseudonymize redacts
                text = text[: e.start] + self._replace(e, text[e.start:e.end], action) + text[e.end:]
        return self._verdict(report, block, flag, rewrite=text if text != out.text else None)

    # ---- shared ---------------------------------------------------------------------------------
    def detect(self, text: str) -> list[Entity]:
        """Entities this policy acts on: configured types, above their thresholds, not allow-listed."""
        return self._keep(text, self.engine.analyze(text))

    def _keep(self, text: str, found: list[Entity]) -> list[Entity]:
        out = []
        for e in found:
            rule = self.rules.get(e.type)
            if rule is None or e.score < (rule.threshold if rule.threshold is not None else self.params.threshold):
                continue
            value = text[e.start:e.end]
            if value.lower() in self.allow or (self.allow_rx is not None and self.allow_rx.fullmatch(value)):
                continue
            out.append(e)
        return out

    def _detect_all(self, texts: list[str]) -> list[list[Entity]]:
        return [self.detect(t) for t in texts]

    async def _detect_async(self, texts: list[str]) -> list[list[Entity]]:
        """The NER pass of these texts joins concurrent requests' in one spaCy batch; the
        recognizers and rules then run in the model pool."""
        if not self.engine.batched:
            return await run_model(self._detect_all, texts)
        if not self.engine.loaded:
            await run_model(self.engine.load)
        pieces = [self.engine.chunk(t) for t in texts]
        artifacts = await nlp_batcher(self.engine).submit([c for p in pieces for _, c in p])
        return await run_model(self._detect_prepared, texts, pieces, artifacts)

    def _detect_prepared(self, texts: list[str], pieces: list, artifacts: list) -> list[list[Entity]]:
        out, pos = [], 0
        for text, p in zip(texts, pieces):
            out.append(self._keep(text, self.engine.analyze_prepared(text, p, artifacts[pos:pos + len(p)])))
            pos += len(p)
        return out

    def _replace(self, e: Entity, value: str, action: str) -> str:
        if action == "mask":
            return mask(value, self.params.mask_char, self.params.mask_keep_last)
        if action == "hash":
            return hashed(e.type, value, self.params.hash_salt)
        return redact(e.type)

    @staticmethod
    def _verdict(report: list[dict], block: bool, flag: bool, *, rewrites=None, rewrite=None) -> Verdict:
        if not report:
            return Verdict.allow()
        counts: dict[str, int] = {}
        for r in report:
            counts[r["type"]] = counts.get(r["type"], 0) + 1
        report.sort(key=lambda r: (r.get("field", ""), r["start"]))
        details = {"counts": counts, "entities": report[:50]}
        reason = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
        score = max(r["score"] for r in report)
        if block:
            return Verdict.block(f"personal data not allowed: {reason}", score=score, **details)
        if rewrites:
            return Verdict.redact_request(rewrites, f"personal data replaced: {reason}", score=score, **details)
        if rewrite is not None:
            return Verdict.redact_output(rewrite, f"personal data replaced: {reason}", score=score, **details)
        return Verdict.flag(f"personal data found: {reason}", score=score, **details)
