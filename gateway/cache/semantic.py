"""The semantic cache: a request whose last user turn means the same as a cached one's, with
everything else identical, gets that answer.

A request is split in two: the last user turn, embedded with MiniLM, and everything else (system
prompt, earlier turns, tools, parameters, model, supplied documents, tenant scope), which must match
exactly - it names the bucket searched. Within a bucket the nearest cached turn by cosine similarity
is a hit only above the route's threshold AND when both turns carry the same guard signature:
the same numbers, the same dates and times, the same names, the same negation. Those are the classic
false hits ("refund order 1234" vs "refund order 1243", "can I" vs "can't I"), which embeddings
place close together.

Vector search is an exact scan in numpy per bucket (a bucket is one tenant's one conversation
prefix, so it stays small); the index lives in the process and points at entries in the store. With
the Redis store each replica indexes the answers it stored itself (stated limit: no shared vector
search; a RediSearch index would lift it).
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.cache.store import CacheKey
from gateway.faithfulness.scorer import _NEGATION

_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_WORD_NUMBERS = frozenset("zero one two three four five six seven eight nine ten eleven twelve twenty thirty "
                          "forty fifty hundred thousand million billion first second third last half".split())
_DATE_WORDS = frozenset("today tomorrow yesterday tonight morning afternoon evening week weekend month year "
                        "monday tuesday wednesday thursday friday saturday sunday january february march april may "
                        "june july august september october november december jan feb mar apr jun jul aug sep sept "
                        "oct nov dec am pm next previous ago".split())
_WORDS = re.compile(r"[A-Za-z][A-Za-z'’]*")
_QUOTED = re.compile(r"\"([^\"]{1,80})\"|'([^']{2,80})'")


def signature(text: str) -> tuple:
    """What two near-identical questions must share to have the same answer: numbers (digits and
    number words), date and time words, capitalised words past a sentence start (names, products,
    places), quoted strings, and whether the question is negated."""
    words = _WORDS.findall(text)
    lower = [w.lower().replace("’", "'") for w in words]
    numbers = frozenset(_NUMBER.findall(text)) | frozenset(w for w in lower if w in _WORD_NUMBERS)
    dates = frozenset(w for w in lower if w in _DATE_WORDS)
    negated = sum(1 for w in lower if w in _NEGATION or w.endswith("n't")) % 2  # "not un-" pairs cancel
    names = set()
    sentence_start = True
    for m in re.finditer(r"[A-Za-z][A-Za-z'’]*|[.!?]", text):
        tok = m.group()
        if tok in ".!?":
            sentence_start = True
            continue
        if tok[0].isupper() and not sentence_start and tok.lower() not in ("i", "i'm", "i've", "i'd", "i'll"):
            names.add(tok.lower())
        sentence_start = False
    quoted = frozenset((a or b).strip().lower() for a, b in _QUOTED.findall(text))
    return numbers, dates, frozenset(names), quoted, negated


def last_user_turn(body: dict[str, Any]) -> tuple[int, str] | None:
    """(index, text) of the last message when it is the user's, with plain text content."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    msg = messages[-1]
    if not isinstance(msg, dict) or msg.get("role") != "user":
        return None
    content = msg.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        text = "\n".join(str(p.get("text", "")) for p in content)
    else:
        return None  # images, audio: not compared by meaning
    return (len(messages) - 1, text) if text.strip() else None


def without_turn(body: dict[str, Any], index: int) -> dict[str, Any]:
    """The body with that message's content blanked: what must match exactly."""
    messages = list(body["messages"])
    messages[index] = {**messages[index], "content": None}
    return {**body, "messages": messages}


@dataclass
class _Bucket:
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((8, 384), dtype=np.float32))
    keys: list[CacheKey | None] = field(default_factory=list)
    signatures: list[tuple | None] = field(default_factory=list)
    dead: int = 0

    def add(self, vec: np.ndarray, sig: tuple, key: CacheKey) -> int:
        n = len(self.keys)
        if n == len(self.vectors):
            grown = np.zeros((2 * n, self.vectors.shape[1]), dtype=np.float32)
            grown[:n] = self.vectors
            self.vectors = grown
        self.vectors[n] = vec
        self.keys.append(key)
        self.signatures.append(sig)
        return n

    def remove(self, i: int) -> None:
        if self.keys[i] is not None:
            self.keys[i] = self.signatures[i] = None
            self.vectors[i] = 0.0  # never the nearest again (its dot product is 0)
            self.dead += 1

    def compact(self) -> dict[int, int]:
        live = [i for i, k in enumerate(self.keys) if k is not None]
        moved = {old: new for new, old in enumerate(live)}
        vectors = np.zeros((max(8, 2 * len(live)), self.vectors.shape[1]), dtype=np.float32)
        vectors[:len(live)] = self.vectors[live]
        self.vectors = vectors
        self.keys = [self.keys[i] for i in live]
        self.signatures = [self.signatures[i] for i in live]
        self.dead = 0
        return moved


class SemanticIndex:
    """Vectors of cached last turns, per bucket, with the keys of their entries in the store."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._buckets: dict[str, _Bucket] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry hash -> (bucket, row)
        self._order: collections.OrderedDict[str, None] = collections.OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._where)

    def search(self, bucket: str, vec: np.ndarray, sig: tuple, threshold: float) -> tuple[CacheKey, float] | None:
        """The most similar cached turn above `threshold` with the same guard signature."""
        b = self._buckets.get(bucket)
        if b is None or not b.keys:
            return None
        sims = b.vectors[:len(b.keys)] @ vec
        # the nearest few (a signature mismatch on the first may not be the last); argpartition, not a
        # full sort: 100k similarities sorted cost more than the product itself
        top = np.argpartition(sims, -8)[-8:] if len(sims) > 8 else np.arange(len(sims))
        for i in top[np.argsort(-sims[top])]:
            sim = float(sims[i])
            if sim < threshold:
                return None
            if b.keys[i] is not None and b.signatures[i] == sig:
                return b.keys[i], sim
        return None

    def add(self, bucket: str, vec: np.ndarray, sig: tuple, key: CacheKey) -> None:
        if key.hash in self._where:
            self.remove(key.hash)
        b = self._buckets.setdefault(bucket, _Bucket())
        self._where[key.hash] = (bucket, b.add(vec, sig, key))
        self._order[key.hash] = None
        while len(self._where) > self.max_entries:
            oldest, _ = self._order.popitem(last=False)
            self.remove(oldest)

    def remove(self, entry_hash: str) -> None:
        where = self._where.pop(entry_hash, None)
        self._order.pop(entry_hash, None)
        if where is None:
            return
        name, row = where
        b = self._buckets[name]
        b.remove(row)
        if b.dead == len(b.keys):
            del self._buckets[name]
        elif b.dead > 32 and b.dead * 2 > len(b.keys):
            for old, new in b.compact().items():
                k = b.keys[new]
                self._where[k.hash] = (name, new)

    def clear(self, scope: str | None = None, model: str | None = None) -> None:
        gone = [h for h, (name, row) in self._where.items()
                if (k := self._buckets[name].keys[row]) is not None
                and (scope is None or k.scope == scope) and (model is None or k.model == model)]
        for h in gone:
            self.remove(h)
