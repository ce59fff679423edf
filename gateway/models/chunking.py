"""Cutting long text into pieces a model can take, at line or sentence ends, covering all of it."""

from __future__ import annotations

import re

_CUT = re.compile(r"\n|[.!?]\s")


def chunks(text: str, size: int) -> list[tuple[int, str]]:
    """(offset, piece) covering all of `text`, each piece at most `size` chars, cut at a line or
    sentence end where one exists in the last quarter of the window (else at a space)."""
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        end = min(n, pos + size)
        if end < n:
            window = text[pos + size * 3 // 4: end]
            cuts = [m.end() for m in _CUT.finditer(window)]
            if cuts:
                end = pos + size * 3 // 4 + cuts[-1]
            else:
                sp = text.rfind(" ", pos + size // 2, end)
                end = sp + 1 if sp > pos else end
        out.append((pos, text[pos:end]))
        pos = end
    return out
