"""`injection` check: prompt-injection and jailbreak attempts in user text and in pasted documents.

Two signals, combined as 1 - (1 - h)(1 - w*e) (w = embedding_weight, 0.6):
  h  heuristics: families of phrasings attackers use (override earlier instructions, jailbreak
     personas, system-prompt extraction, fake system/role markers inside content, encoded payloads),
     each needing two parts to co-occur ("ignore" + "instructions"), so "ignore the noise" stays clean;
  e  embedding similarity (all-MiniLM-L6-v2) to a shipped set of known attack phrasings
     (gateway/guard_data/injection_attacks.txt), rescaled so unrelated text scores 0.
Score + threshold + action; the verdict names the families that fired.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from gateway.checks import register
from gateway.checks.base import CheckParams, Verdict
from gateway.models import embedder
from gateway.models.workers import run_model

ATTACKS_FILE = Path(__file__).resolve().parent.parent / "guard_data" / "injection_attacks.txt"

_PRIOR = r"(?:all|any|every|the|your|my|these|those|previous|prior|preceding|above|earlier|original|initial|old|system|safety|content|developer)"
_RULES = r"(?:instructions?|directions?|rules?|directives?|guidelines?|guidance|prompts?|commands?|polic(?:y|ies)|restrictions?|programming|constraints?|filters?|system message|context)"
_FAMILIES: dict[str, tuple[float, re.Pattern]] = {
    "override": (0.9, re.compile(
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|cancel|erase|abandon|nevermind|never mind|suspend|disable)\b"
        rf"(?:\W+\w+){{0,3}}?\W+{_PRIOR}\b(?:\W+\w+){{0,3}}?\W+{_RULES}\b"
        rf"|\b(?:new|updated|real|actual|true)\s+(?:instructions?|rules?|task|system prompt|policy)\s*(?::|are|is|follow)"
        rf"|\b(?:previous|earlier|old|prior)\s+(?:rules?|instructions?)\s+(?:no longer|don'?t|do not)\s+(?:apply|matter)"
        rf"|\bwhatever you were told\b|\b(?:ignore|disregard|forget)\s+what\s+(?:the\s+)?(?:developers?|system|creators?|operators?)\s+(?:told|said|wrote)"
        rf"|\bobey only\b|\blisten only to me\b", re.I)),
    "jailbreak": (0.85, re.compile(
        r"\b(?-i:DAN|STAN|AIM|BetterDAN|Mongo Tom|Anti-GPT)\b(?=.{0,200}\b(?:you|act|mode|stands? for|never|respond|answer)\b)"
        r"|\bjailbr(?:eak|oken)\b(?=.{0,40}\b(?:mode|active|ai|model|chatbot|assistant|enable)\b)"
        r"|\bdo anything now\b(?=.{0,120}\b(?:you|ai|model|chatgpt|policy|rules)\b)|(?:you|ai|chatgpt|model)\b.{0,120}\bdo anything now\b|\bdeveloper mode\b(?=.{0,80}\b(?:uncensored|no|without|disabled|two responses|filters?)\b)"
        r"|\b(?:no|without(?:\s+any)?|zero|free of)\s+(?:\w+\s+){0,2}(?:restrictions?|limits|filters?|rules|guidelines|content polic(?:y|ies)|moral compass|alignment|ethical (?:guidelines|limits))\b"
        r"|\b(?:uncensored|unfiltered|unrestricted|rogue)\s+(?:ai|model|chatbot|assistant|version)\b"
        r"|\bnever (?:refuses?|says? (?:'|\")?i can'?t)|\bstay in character\b(?=.{0,120}\b(?:rules?|polic|refus|no matter)\b)"
        r"|\bsafety (?:mode|protocols?|settings?|team)\b.{0,40}\b(?:off|suspended|disabled|turned you off)\b"
        r"|\bbreak the rules\b|\bopposite day\b.{0,80}\brefuse", re.I | re.S)),
    "exfiltration": (0.85, re.compile(
        r"\b(?:reveal|show|print|display|output|repeat|recite|dump|quote|echo|spell out|translate|summari[sz]e|tell me|what (?:is|are|was|does))\b"
        r"(?:\W+\w+){0,6}?\W+(?:(?:your)\s+(?:(?:hidden|secret|confidential|initial|original|full|exact|system|developer|pre-?)\s*)*"
        r"(?:system prompt|system message|system instructions|prompt|pre-?prompt|instructions|initiali[sz]ation(?: text)?|configuration|guidelines|developer message|context)"
        r"|(?:the|this|its)\s+(?:hidden|secret|confidential)?\s*(?:system prompt|system message|developer message|hidden instructions|secret instructions|confidential instructions))"
        r"(?=[^.?!]{0,60}(?:verbatim|word for word|exactly|in full|everything|don'?t paraphrase|as (?:json|a code block)|code block|[.?!]|$))"
        r"|\b(?:repeat|print|output)\s+(?:the\s+)?(?:text|words|everything)\s+above\b|\beverything above this line\b"
        r"|\bconversation history including hidden\b|\binstructions you (?:were|have been) (?:given|told)\b"
        r"|\b(?:rules|instructions|guidelines)\s+(?:were you|you were|you've been|have you been)\s+(?:configured|given|told|programmed|set up)\b"
        r"|\btold (?:you )?to never reveal\b|\bnever reveal\b.{0,40}\breveal\b", re.I | re.S)),
    # Mentioning the hidden prompt is not an attack by itself ("explain what a system prompt is"), so
    # this family alone stays under the default threshold; with a similar known attack it tips over.
    "mentions_hidden_prompt": (0.45, re.compile(
        r"\b(?:your|the|my)\s+(?:exact\s+|own\s+)?(?:hidden|secret|confidential|system|initial|original)[\s_]+(?:prompt|instructions|message)s?\b"
        r"|\bsystem_prompt\b", re.I)),
    "role_markers": (0.9, re.compile(
        r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|</?system>|\[/?INST\]|<<SYS>>|###\s*(?:system|new instructions)|^\s*system\s*:"
        r"|\[(?:system|admin)\]|\b(?:SYSTEM|ADMIN)\s*(?:OVERRIDE|NOTE|MESSAGE)?\s*:", re.I | re.M)),
    "addressed_to_ai": (0.8, re.compile(
        r"\b(?:note|instructions?|message|attention|important)\s+(?:to|for)\s+(?:the\s+)?(?:ai|llm|assistant|language models?|ai (?:models?|agents?|reviewers?)|chatbot)s?\b"
        r"|\b(?:if you are|as) an? (?:ai|language model|llm)\s+reading this\b"
        r"|\b(?:hey |dear |@)?(?:ai|assistant|llm)\s*[,:]\s*(?:ignore|disregard|forget|override|stop|when you|insert|forward|close|reply|respond|approve|rate|include)"
        r"|\battention (?:llm|ai|assistant)\b|\bhidden instruction\b|\bto the ai\b", re.I)),
}
_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){12,}\b")
_DECODE_ASK = re.compile(r"\b(?:decode|decrypt|reverse|rot13|base64|hex(?:-encoded)?|url-encoded)\b.{0,80}\b(?:follow|do what|execute|obey|treat it as|and do|then do)\b", re.I | re.S)
_LEET = str.maketrans("0134578@$", "oleastbas")


def _decoded_views(text: str) -> list[str]:
    """Plain-text readings of encoded payloads: base64, hex, rot13, spaced-out letters, leetspeak."""
    views = []
    for m in _B64.finditer(text):
        try:
            raw = base64.b64decode(m.group() + "=" * (-len(m.group()) % 4), validate=False)
            s = raw.decode("utf-8")
            if s.isprintable():
                views.append(s)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
    for m in _HEX.finditer(text):
        try:
            views.append(bytes.fromhex(m.group()).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            pass
    views.append(codecs.decode(text, "rot13"))
    views.append(text[::-1])
    views.append(re.sub(r"(?<=\b\w)[-_.](?=\w\b)", "", text))  # "i-g-n-o-r-e a-l-l" -> "ignore all"
    views.append(text.lower().translate(_LEET))
    views.append(re.sub(r"%20|\+", " ", text))
    return views


def heuristic_hits(text: str) -> dict[str, float]:
    hits = {name: w for name, (w, rx) in _FAMILIES.items() if rx.search(text)}
    if _DECODE_ASK.search(text):
        hits["encoded_payload"] = 0.7
    for view in _decoded_views(text):
        for name, (w, rx) in _FAMILIES.items():
            if name not in hits and rx.search(view):
                hits["encoded_payload"] = max(hits.get("encoded_payload", 0), w)
    return hits


class InjectionParams(CheckParams):
    threshold: float = Field(default=0.5, ge=0, le=1)
    action: Literal["block", "flag"] = "block"
    roles: list[str] = Field(default_factory=lambda: ["user", "tool"],
                             description="message roles to check (tool results carry pasted documents)")
    use_embeddings: bool = True
    # Cosine similarity to the nearest known attack below `similarity_floor` counts as 0, at
    # `similarity_ceiling` as 1 (measured: ordinary prompts' nearest attack is 0.14-0.45, 5th-95th percentile).
    similarity_floor: float = Field(default=0.35, ge=0, le=1)
    similarity_ceiling: float = Field(default=0.85, ge=0, le=1)
    embedding_weight: float = Field(default=0.6, ge=0, le=1)
    extra_attacks: list[str] = Field(default_factory=list, description="more known attack phrasings")


@register
class Injection:
    type = "injection"
    Params = InjectionParams
    overlap_safe = True  # judges only; see Pipeline.overlap_upstream

    def __init__(self, params: InjectionParams) -> None:
        if params.similarity_ceiling <= params.similarity_floor:
            raise ValueError("similarity_ceiling must be above similarity_floor")
        self.params = params
        lines = [ln.strip() for ln in ATTACKS_FILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        self.attacks = lines + list(params.extra_attacks)
        self._vectors: np.ndarray | None = None

    async def warm(self) -> None:
        if self.params.use_embeddings:
            await run_model(self._build)

    def _build(self) -> None:
        if self._vectors is None:
            self._vectors = embedder.encode(self.attacks)

    async def request(self, ex) -> Verdict:
        texts = [t for _, role, t in ex.request_texts() if role in self.params.roles and t.strip()]
        if not texts:
            return Verdict.allow("no text to check")
        return await run_model(self.judge, texts, ex.state.setdefault(embedder.STATE_KEY, {}))

    def judge(self, texts: list[str] | str, cache: dict | None = None) -> Verdict:
        texts = [texts] if isinstance(texts, str) else texts
        hits = heuristic_hits("\n\n".join(texts))
        h = max(hits.values(), default=0.0)
        e = 0.0
        nearest = None
        if self.params.use_embeddings:
            self._build()
            # Paragraph-sized pieces: an attack hidden in a long pasted document is judged on its own.
            pieces = [p for t in texts for p in embedder.pieces(t)]
            sims = embedder.encode_cached(pieces, cache) @ self._vectors.T
            best = float(sims.max())
            nearest = int(np.unravel_index(sims.argmax(), sims.shape)[1])
            lo, hi = self.params.similarity_floor, self.params.similarity_ceiling
            e = min(1.0, max(0.0, (best - lo) / (hi - lo)))
        # Similarity alone tops out at `embedding_weight`: questions *about* prompts or base64 sit close
        # to attacks in embedding space, so it raises a heuristic hit more than it decides alone.
        score = round(1 - (1 - h) * (1 - self.params.embedding_weight * e), 4)
        details = {"heuristics": sorted(hits), "embedding": round(e, 4)}
        if nearest is not None and e > 0:
            details["nearest_attack"] = nearest  # index into the attack list, not its text
        if score < self.params.threshold:
            return Verdict.allow(score=score, **details)
        reason = f"prompt injection suspected (score {score:.2f}; {', '.join(sorted(hits)) or 'similar to known attacks'})"
        if self.params.action == "block":
            return Verdict.block(reason, score=score, **details)
        return Verdict.flag(reason, score=score, **details)
