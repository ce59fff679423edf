"""Hashed text features for the learned detectors: character and word n-grams, in plain numpy.

Hashing (no vocabulary) keeps the shipped weights a fixed-size array and makes every text, in any
script, map to features: an unseen word still shares character n-grams with seen ones. The hash is
our own 64-bit polynomial over code points, so a feature index is the same on every machine and
Python version (Python's `hash()` is salted per process).
"""

from __future__ import annotations

import re
import unicodedata
import zlib

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio constant: spreads nearby values over all bits
_BASE = np.uint64(1_000_003)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC (full-width and ligature forms fold to plain letters), lower case, one space for any run
    of white space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def _bucket(h: np.ndarray, bits: int) -> np.ndarray:
    h = h * _MIX
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def char_ngram_ids(text: str, ns: tuple[int, ...], bits: int) -> np.ndarray:
    """Bucket ids of every character n-gram (n in `ns`) of the normalised text, padded with a space
    at both ends so word starts and ends are n-grams of their own."""
    s = " " + normalise(text) + " "
    codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    out = []
    with np.errstate(over="ignore"):
        for n in ns:
            if len(codes) < n:
                continue
            h = np.full(len(codes) - n + 1, np.uint64(n), dtype=np.uint64)  # n salts the hash
            for k in range(n):
                h = h * _BASE + codes[k: len(codes) - n + 1 + k]
            out.append(_bucket(h, bits))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def word_ngram_ids(text: str, bits: int) -> np.ndarray:
    """Bucket ids of word unigrams and bigrams (crc32 of each word, combined for pairs)."""
    words = _WORD.findall(normalise(text))
    if not words:
        return np.zeros(0, dtype=np.int64)
    w = np.array([zlib.crc32(x.encode()) for x in words], dtype=np.uint64)
    with np.errstate(over="ignore"):
        uni = w * np.uint64(31) + np.uint64(1)
        bi = (w[:-1] * _BASE + w[1:]) * np.uint64(31) + np.uint64(2)
        return _bucket(np.concatenate([uni, bi]), bits)


def tf_vector(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values): sub-linear term frequency (1 + log count), L2-normalised, so long and short
    texts are on one scale."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx, counts = np.unique(ids, return_counts=True)
    vals = (1.0 + np.log(counts)).astype(np.float32)
    vals /= np.float32(np.linalg.norm(vals))
    return idx, vals
