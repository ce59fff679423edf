"""What the `pii` check does to a detected value: redact, mask, hash or pseudonymize (reversibly).

Pseudonyms are per request: the same value gets the same `<PERSON_1>` everywhere in the request, the
placeholders go upstream, and `Restorer` puts the originals back into the answer, also when a
placeholder arrives split across streamed chunks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable
from dataclasses import dataclass, field


def redact(kind: str) -> str:
    return f"<{kind}>"


def mask(value: str, char: str = "*", keep_last: int = 0) -> str:
    keep = value[-keep_last:] if keep_last else ""
    body = value[: len(value) - len(keep)]
    return "".join(ch if ch in " -@." else char for ch in body) + keep


def hashed(kind: str, value: str, salt: str) -> str:
    digest = hashlib.sha256((salt + value).encode()).hexdigest()[:12]
    return f"<{kind}:{digest}>"


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*)_(\d+)>")


@dataclass
class Pseudonyms:
    """value -> placeholder for one request. Numbers already used in the request's own text (a user
    who types `<PERSON_1>` themselves) are skipped, so restoring never rewrites the user's own text."""

    taken: set[str] = field(default_factory=set)
    forward: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, value) -> placeholder
    back: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    counters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_texts(cls, texts: list[str]) -> Pseudonyms:
        return cls(taken={m.group(0) for t in texts for m in _PLACEHOLDER.finditer(t)})

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.forward:
            while True:
                self.counters[kind] = self.counters.get(kind, 0) + 1
                ph = f"<{kind}_{self.counters[kind]}>"
                if ph not in self.taken:
                    break
            self.forward[key] = ph
            self.back[ph] = value
        return self.forward[key]

    def restore(self, text: str) -> str:
        if not self.back or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.back.get(m.group(0), m.group(0)), text)


_PARTIAL = re.compile(r"<[A-Z_]*\d*$")


class Restorer:
    """Restores placeholders in a stream, per text stream (a choice's content, or one of its tool
    calls' arguments, keyed (choice, tool index)): text that could be the start of a placeholder
    (`<PERS`, `<PERSON_1`) is held back until the next chunk completes or rules it out."""

    def __init__(self, pseudonyms: Pseudonyms) -> None:
        self.p = pseudonyms
        self.pending: dict[Hashable, str] = {}

    def feed(self, key: Hashable, text: str) -> str:
        buf = self.pending.pop(key, "") + text
        m = _PARTIAL.search(buf)
        if m and len(buf) - m.start() <= 40:
            self.pending[key] = buf[m.start():]
            buf = buf[: m.start()]
        return self.p.restore(buf)

    def flush(self, key: Hashable) -> str:
        return self.p.restore(self.pending.pop(key, ""))

    def held_keys(self, choice: int) -> list[tuple[int, int]]:
        """Tool-call streams of `choice` with text held back."""
        return sorted(k for k in self.pending if isinstance(k, tuple) and k[0] == choice)
