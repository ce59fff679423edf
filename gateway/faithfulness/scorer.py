"""Faithfulness of an answer to its context documents, claim by claim.

Each sentence of the answer is a claim. Its support combines:
  lexical   share of its content words (stemmed, stop words and discourse fillers left out, number
            words as digits) that occur in the context: invented facts bring words the context lacks;
  semantic  MiniLM similarity of the claim - read with the question, since a bare answer span embeds
            poorly - to the closest context sentence; it can lift a paraphrase the words miss, by at
            most `semantic_weight` of the gap;
  agreement numbers and proper names the claim states that the context does not contain (the classic
            hallucination: a wrong year, amount or person), and first-person experience the context
            does not report ("I have been there"), each cut the claim's support.
The answer's score is the mean claim support; claims under the threshold are the unsupported ones.
Length and form are not used: a one-word answer and a long sentence are judged by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STOP = frozenset("""
a an the of and or but if then than to in on at by for with from as is are was were be been being it its it's
this that these those there here which who whom whose what when where why how i you he she we they me him her
us them my your his our their do does did doing done not no nor so very can could would should will shall may
might must have has had having about into over also just only such some any all each both more most other
one s t d ll re ve m percent don't isn't wasn't aren't weren't doesn't didn't can't won't i'm i've i'd you're
""".split())
# Conversational words that carry no claim ("Sure!", "Absolutely.", "It really is.").
FILLERS = frozenset("""
absolutely sure yes yeah yep oh wow well indeed really actually interesting great cool okay ok hmm
certainly definitely true right exactly agree
""".split())
NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000", "million": "1000000",
}
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+|(?<=[\u3002\uff01\uff1f])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_UP = frozenset("rise rises rose risen grow grows grew grown increase increased increases gain gained gains up "
                "higher more exceed exceeded expand expanded".split())
_DOWN = frozenset("fall falls fell fallen decline declined declines decrease decreased decreases drop dropped drops "
                  "lose lost down lower less shrink shrank shrunk".split())
_NEGATION = frozenset("not no never none nobody nothing neither nor without cannot n't isn't wasn't aren't weren't "
                      "doesn't didn't don't can't won't hasn't haven't hadn't".split())
# Citation markers ("[2]", "[doc-7]", "(source: faq)") are the citations check's business; the
# faithfulness of a claim is judged on its words.
_CITATION = re.compile(r"\[[^\]\n]{1,40}\]|\((?:source|src|ref)s?:[^)\n]{0,60}\)", re.IGNORECASE)
_PERSONAL = re.compile(
    r"\b(?:i|i'm|i've|i'd|we|we've|we're|my|me|our)\b(?!\s+(?:think|believe|guess|suppose|know|heard|read|"
    r"understand|mean|recall|remember that)\b)", re.IGNORECASE)


def stem(t: str) -> str:
    """A light English stemmer: plural and common verb endings, so "employees" meets "employee"."""
    if len(t) <= 4:
        return t
    if t.endswith("ies"):
        return t[:-3] + "y"
    if t.endswith(("sses", "shes", "ches", "xes", "zes")):
        return t[:-2]
    for suffix in ("ing", "ed", "ly"):
        if t.endswith(suffix) and len(t) > len(suffix) + 3:
            return t[: -len(suffix)]
    if t.endswith("s") and not t.endswith(("ss", "us", "is")):
        return t[:-1]
    return t


def content_words(text: str, *, drop_fillers: bool = False) -> list[str]:
    out = []
    for raw in _TOKEN.findall(text.lower()):
        t = NUMBER_WORDS.get(raw, raw)
        if t in STOP or (drop_fillers and t in FILLERS):
            continue
        out.append(stem(t))
    return out


def numbers(text: str) -> set[str]:
    out = {n.replace(",", "") for n in _NUMBER.findall(text)}
    out |= {NUMBER_WORDS[w] for w in _TOKEN.findall(text.lower()) if w in NUMBER_WORDS}
    return out


def split_claims(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text` that holds any word."""
    spans, pos = [], 0
    for m in _SENTENCE.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return [(s, e) for s, e in spans if _TOKEN.search(text[s:e])]


@dataclass(slots=True)
class Claim:
    start: int
    end: int
    support: float
    lexical: float
    semantic: float | None = None
    novel_numbers: int = 0
    novel_names: int = 0
    personal: bool = False
    contradiction: bool = False

    def to_json(self) -> dict:
        out = {"start": self.start, "end": self.end, "support": round(self.support, 4),
               "lexical": round(self.lexical, 4)}
        if self.semantic is not None:
            out["semantic"] = round(self.semantic, 4)
        for k in ("novel_numbers", "novel_names"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        for k in ("personal", "contradiction"):
            if getattr(self, k):
                out[k] = True
        return out


@dataclass(slots=True)
class Result:
    score: float
    claims: list[Claim] = field(default_factory=list)

    def unsupported(self, threshold: float) -> list[int]:
        return [i for i, c in enumerate(self.claims) if c.support < threshold]


@dataclass(frozen=True, slots=True)
class Weights:
    semantic_weight: float = 0.5  # how much of the gap to full support similarity may close
    semantic_floor: float = 0.35  # cosine at or below: no semantic support
    semantic_ceiling: float = 0.85  # cosine at or above: full semantic support
    number_penalty: float = 0.5  # per claim stating a number the context lacks
    name_penalty: float = 0.8  # per claim naming a proper name the context lacks
    personal_penalty: float = 0.8  # first-person experience the context does not report
    contradiction_penalty: float = 0.7  # opposite direction (rose/fell) or negation against the closest sentence


class Context:
    """The documents, prepared once per request: word and number sets, sentences for embedding."""

    def __init__(self, docs: list[str], question: str = "") -> None:
        self.docs = docs
        joined = "\n".join(docs)
        self.text = joined
        self.words = set(content_words(joined))
        self.numbers = numbers(joined)
        self.lower = joined.lower()
        self.personal = bool(_PERSONAL.search(joined))
        self.question = question
        self.question_words = set(content_words(question))
        self.sentences = [joined[s:e] for s, e in split_claims(joined)]
        self.sentence_words = [set(_words_lower(x)) for x in self.sentences]
        self.vectors: np.ndarray | None = None
        self.embedding: Any = None  # the task embedding `sentences`, when started ahead of the answer


def score_claims(answer: str, ctx: Context, weights: Weights = Weights(),
                 claim_vectors: np.ndarray | None = None) -> Result:
    """Score `answer` against prepared context. `claim_vectors` (one row per claim, unit length) and
    `ctx.vectors` enable the semantic part; without them the score is lexical and agreement only."""
    spans = [(s, e) for s, e in split_claims(answer) if content_words(_CITATION.sub(" ", answer[s:e]), drop_fillers=True)]
    claims = []
    for i, (s, e) in enumerate(spans):  # "Sure!" asserts nothing: such sentences are not claims
        text = _CITATION.sub(" ", answer[s:e])
        words = content_words(text, drop_fillers=True)
        lexical = sum(w in ctx.words for w in words) / len(words)
        support = lexical
        semantic = None
        if claim_vectors is not None and ctx.vectors is not None and len(ctx.vectors) and claim_vectors[i].any():
            cos = float((ctx.vectors @ claim_vectors[i]).max())
            semantic = min(1.0, max(0.0, (cos - weights.semantic_floor) / (weights.semantic_ceiling - weights.semantic_floor)))
            support += weights.semantic_weight * max(0.0, semantic - lexical)
        novel_numbers = len(numbers(text) - ctx.numbers - numbers(ctx.question))
        novel_names = sum(1 for m in _PROPER.finditer(text)
                          if m.group().lower() not in ctx.lower and m.group().lower() not in ctx.question.lower())
        personal = bool(_PERSONAL.search(text)) and not ctx.personal
        contradiction = _contradicts(text, ctx)
        if novel_numbers:
            support *= weights.number_penalty
        if novel_names:
            support *= weights.name_penalty
        if personal:
            support *= weights.personal_penalty
        if contradiction:
            support *= weights.contradiction_penalty
        claims.append(Claim(s, e, support, lexical, semantic, novel_numbers, novel_names, personal, contradiction))
    if not claims:
        return Result(1.0, [])
    return Result(float(np.mean([c.support for c in claims])), claims)


def _words_lower(text: str) -> list[str]:
    return [w.replace("’", "'") for w in re.findall(r"[^\W_]+(?:['’][^\W_]+)?", text.lower())]


def _contradicts(claim: str, ctx: Context) -> bool:
    """The claim says the opposite of the context sentence it shares most words with: the other
    direction of change (grew / fell), or a negation the sentence lacks (or the reverse)."""
    words = set(_words_lower(claim))
    content = {w for w in words if w not in STOP}
    if not content or not ctx.sentence_words:
        return False
    best = max(ctx.sentence_words, key=lambda sw: len(content & sw))
    if len(content & best) < max(2, len(content) // 3):
        return False  # no sentence is about the same thing
    if (words & _UP and best & _DOWN and not best & _UP) or (words & _DOWN and best & _UP and not best & _DOWN):
        return True
    return bool(words & _NEGATION) != bool(best & _NEGATION)


def claim_texts(answer: str, question: str = "") -> list[str]:
    """What to embed per claim: the claim read with the question (a bare span embeds poorly)."""
    return [(question + " " + _CITATION.sub(" ", answer[s:e])).strip() for s, e in split_claims(answer)
            if content_words(_CITATION.sub(" ", answer[s:e]), drop_fillers=True)]
