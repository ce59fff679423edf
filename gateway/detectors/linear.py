"""Linear scorers over hashed n-grams, dense embeddings and named flags, and their weights files.

A weights file is one `.npz`: the arrays of each scorer plus a JSON manifest (feature settings,
calibration, threshold, training figures, a checksum per array). Loading checks all of it and
raises `WeightsError` naming the file, so a missing or damaged file stops start-up with a clear
message instead of silently weakening a guardrail.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from gateway.detectors import features as F

log = logging.getLogger("gateway.detectors")
T = TypeVar("T")


class WeightsError(RuntimeError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


_LOADED: dict[tuple[Callable, str, int], Any] = {}


def load_shared(load: Callable[[Path], T], path: Path) -> T:
    """`load(path)`, once per weights file version per process: every check instance and policy reload
    shares one copy, and an edited file (new mtime) is read again. Raises WeightsError."""
    key = (load, str(path), path.stat().st_mtime_ns if path.exists() else 0)
    if key not in _LOADED:
        _LOADED[key] = load(path)
    return _LOADED[key]


def load_or_fallback(load: Callable[[Path], T], path: Path, *, check: str, fallback: str,
                     instead: str) -> T | None:
    """The learned model of a check, or None when its weights cannot load and the policy chose
    `fallback: heuristics` (said once in the log); otherwise a ValueError naming the file, which
    refuses the policy. `instead`: what the check does without the model."""
    try:
        return load_shared(load, path)
    except WeightsError as e:
        if fallback != "heuristics":
            raise ValueError(f"{check} weights: {e} (or set `fallback: heuristics` to {instead})") from None
        log.warning("%s weights unusable (%s); this policy will %s", check, e, instead)
        return None


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    char_ns: tuple[int, ...] = (2, 3, 4, 5)
    char_bits: int = 18
    word_bits: int = 18
    dense_dim: int = 0
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"char_ns": list(self.char_ns), "char_bits": self.char_bits, "word_bits": self.word_bits,
                "dense_dim": self.dense_dim, "flags": list(self.flags)}

    @classmethod
    def from_json(cls, d: dict) -> FeatureSpec:
        return cls(tuple(d["char_ns"]), int(d["char_bits"]), int(d["word_bits"]), int(d["dense_dim"]),
                   tuple(d["flags"]))

    def featurize(self, text: str, dense: np.ndarray | None = None, flags: dict[str, float] | None = None
                  ) -> TextFeatures:
        ci, cv = F.tf_vector(F.char_ngram_ids(text, self.char_ns, self.char_bits))
        wi, wv = F.tf_vector(F.word_ngram_ids(text, self.word_bits))
        d = np.zeros(self.dense_dim, dtype=np.float32) if dense is None else np.asarray(dense, dtype=np.float32)
        if d.shape != (self.dense_dim,):
            raise ValueError(f"dense features have shape {d.shape}, expected ({self.dense_dim},)")
        fl = np.array([float((flags or {}).get(name, 0.0)) for name in self.flags], dtype=np.float32)
        return TextFeatures(ci, cv, wi, wv, d, fl)

    @property
    def width(self) -> int:
        return (1 << self.char_bits) + (1 << self.word_bits) + self.dense_dim + len(self.flags)


@dataclass(frozen=True, slots=True)
class TextFeatures:
    char_idx: np.ndarray
    char_val: np.ndarray
    word_idx: np.ndarray
    word_val: np.ndarray
    dense: np.ndarray
    flags: np.ndarray

    def sparse_row(self, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, values) in the flat layout [char | word | dense | flags] (training)."""
        off_w = 1 << spec.char_bits
        off_d = off_w + (1 << spec.word_bits)
        off_f = off_d + spec.dense_dim
        cols = np.concatenate([self.char_idx, self.word_idx + off_w, np.arange(spec.dense_dim) + off_d,
                               np.arange(len(spec.flags)) + off_f])
        vals = np.concatenate([self.char_val, self.word_val, self.dense, self.flags]).astype(np.float32)
        return cols, vals


@dataclass(slots=True)
class LinearScorer:
    spec: FeatureSpec
    w_char: np.ndarray
    w_word: np.ndarray
    w_dense: np.ndarray
    w_flags: np.ndarray
    bias: float

    def raw(self, f: TextFeatures) -> float:
        """The decision value (log-odds before calibration)."""
        return float(self.bias + self.w_char[f.char_idx] @ f.char_val + self.w_word[f.word_idx] @ f.word_val
                     + self.w_dense @ f.dense + self.w_flags @ f.flags)

    @classmethod
    def from_flat(cls, spec: FeatureSpec, coef: np.ndarray, bias: float) -> LinearScorer:
        a = 1 << spec.char_bits
        b = a + (1 << spec.word_bits)
        c = b + spec.dense_dim
        coef = np.asarray(coef, dtype=np.float32).ravel()
        if len(coef) != spec.width:
            raise ValueError(f"{len(coef)} coefficients for a layout of {spec.width}")
        return cls(spec, coef[:a], coef[a:b], coef[b:c], coef[c:], float(bias))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        # float16 halves the file; the scores move by < 1e-3 (checked by the training script).
        return {f"{prefix}.char": self.w_char.astype(np.float16), f"{prefix}.word": self.w_word.astype(np.float16),
                f"{prefix}.dense": self.w_dense.astype(np.float32), f"{prefix}.flags": self.w_flags.astype(np.float32),
                f"{prefix}.bias": np.array([self.bias], dtype=np.float64)}

    @classmethod
    def from_arrays(cls, spec: FeatureSpec, arrays: dict[str, np.ndarray], prefix: str) -> LinearScorer:
        def get(name: str, size: int) -> np.ndarray:
            a = arrays[f"{prefix}.{name}"].astype(np.float32)
            if a.shape != (size,):
                raise ValueError(f"array {prefix}.{name} has shape {a.shape}, expected ({size},)")
            return a

        return cls(spec, get("char", 1 << spec.char_bits), get("word", 1 << spec.word_bits),
                   get("dense", spec.dense_dim), get("flags", len(spec.flags)),
                   float(arrays[f"{prefix}.bias"][0]))


@dataclass(slots=True)
class WeightsFile:
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        manifest = dict(self.manifest)
        manifest["checksums"] = {k: _digest(v) for k, v in sorted(self.arrays.items())}
        buf = io.BytesIO()
        # Fixed order and no timestamps inside the archive: the same training run writes the same bytes.
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, arr in [("manifest", np.frombuffer(json.dumps(manifest, sort_keys=True, indent=1).encode(),
                                                         dtype=np.uint8)), *sorted(self.arrays.items())]:
                info = zipfile.ZipInfo(name + ".npy", date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                a = io.BytesIO()
                np.save(a, arr, allow_pickle=False)
                z.writestr(info, a.getvalue())
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: Path, kind: str) -> WeightsFile:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(path, f"weights file for the {kind} detector is missing; regenerate it with "
                                     f"`gateway train {kind}` (or reinstall the package)")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            manifest = json.loads(arrays.pop("manifest").tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise WeightsError(path, f"weights file is damaged ({type(e).__name__}: {e}); regenerate it with "
                                     f"`gateway train {kind}`") from None
        if manifest.get("kind") != kind:
            raise WeightsError(path, f"holds weights for {manifest.get('kind')!r}, not for {kind!r}")
        sums = manifest.get("checksums", {})
        for name, arr in arrays.items():
            if sums.get(name) != _digest(arr):
                raise WeightsError(path, f"array {name!r} does not match its checksum (file damaged or edited)")
        if set(sums) != set(arrays):
            raise WeightsError(path, "arrays are missing from the weights file")
        return cls(manifest, arrays)


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes() + str(arr.dtype).encode()).hexdigest()[:16]
