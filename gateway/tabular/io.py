"""Read a dataset (CSV, or Parquet when pyarrow is installed) into named numpy columns.

Numeric columns become float arrays (empty cells are NaN). A column with any value that does not
parse as a number stays as text: against a numeric reference, those values are counted as invalid.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np


def read_table(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file (a header row naming the columns is needed)") from None
        rows = list(reader)
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in the header")
    width = len(header)
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise ValueError(f"{path}:{bad + 2}: {len(rows[bad])} values, but the header has {width} columns")
    columns = list(zip(*rows)) if rows else [()] * width
    return {name: _column(values) for name, values in zip(header, columns)}


def _column(values: tuple[str, ...]) -> np.ndarray:
    try:
        return np.array([v if v.strip() else "nan" for v in values], dtype=float)
    except ValueError:
        return np.array(values, dtype=object)


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or use CSV") from None
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        col = table.column(name).to_numpy(zero_copy_only=False)
        out[name] = col.astype(float) if col.dtype.kind in "fiub" else col.astype(object)
    return out


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
