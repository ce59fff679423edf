"""What every detector's training shares: data files, grouped splits, metrics, the model card."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
SEED = 20261202
DEV_FRACTION = 0.25


def data_dir(arg: str | None = None) -> Path:
    """--data, $GATEWAY_TRAIN_DATA, or ../shared/data/train beside the checkout."""
    if arg or os.environ.get("GATEWAY_TRAIN_DATA"):
        return Path(arg or os.environ["GATEWAY_TRAIN_DATA"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SystemExit(f"gateway train: {path} not found (pass --data DIR holding the training sets)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def grouped_split(rows: Sequence[T], group: Callable[[T], str], dev_fraction: float = DEV_FRACTION,
                  seed: int = SEED) -> tuple[list[T], list[T]]:
    """Train/dev split by group (rows of one group never straddle the split), reproducible."""
    groups = sorted({group(r) for r in rows})
    random.Random(seed).shuffle(groups)
    dev = set(groups[: int(len(groups) * dev_fraction)])
    return [r for r in rows if group(r) not in dev], [r for r in rows if group(r) in dev]


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Rank-based AUROC with ties averaged (same convention as ../shared/eval/binary_score.py)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if not n1 or not n0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def threshold_table(prob: np.ndarray, labels: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Per threshold: precision, recall and false-alarm rate (share of label-0 rows at or above)."""
    out = []
    for t in thresholds:
        hit = prob >= t
        tp = int((hit & (labels == 1)).sum())
        fp = int((hit & (labels == 0)).sum())
        out.append({"threshold": t, "precision": round(tp / max(1, tp + fp), 4),
                    "recall": round(tp / max(1, int((labels == 1).sum())), 4),
                    "false_alarm_rate": round(fp / max(1, int((labels == 0).sum())), 4)})
    return out


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, what: str) -> None:
        print(f"  [{time.perf_counter() - self.t0:7.1f} s] {what}", flush=True)


class EmbeddingCache:
    """MiniLM vectors of training texts, kept between training runs in .gateway/train-cache (the
    embeddings are deterministic for a given model and text, so reusing them changes nothing but
    the time a rerun takes). GATEWAY_TRAIN_CACHE=off disables it."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], name: str = "minilm") -> None:
        self.encode = encode
        self.path = Path(os.environ.get("GATEWAY_STATE_DIR", ".gateway")) / "train-cache" / f"{name}.npz"
        self.enabled = os.environ.get("GATEWAY_TRAIN_CACHE", "on") != "off"
        self.vectors: dict[str, np.ndarray] = {}
        self.computed = 0
        if self.enabled and self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                self.vectors = dict(zip(z["keys"].tolist(), z["vectors"]))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self.vectors))
        for i in range(0, len(missing), 512):
            batch = missing[i:i + 512]
            self.vectors.update(zip((self.key(t) for t in batch), self.encode(batch)))
        self.computed += len(missing)
        return np.stack([self.vectors[k] for k in keys]) if texts else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        if not self.enabled or not self.computed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.vectors)
        np.savez(self.path, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))
