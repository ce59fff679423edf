"""Read a dataset (CSV or Parquet) into named numpy columns.

With pyarrow (the `drift` extra) both formats are parsed by Arrow into typed columns, with no
Python loop per row; without it, CSV falls back to the csv module (fine for small files). Numeric
columns become float arrays (float32 stays float32; empty, NA and null cells are NaN). A column with
any value that does not parse as a number stays as text: against a numeric reference, those values
are counted as invalid. true/false and dates are text (categories), as in the csv-module reader.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

DRIFT_EXTRA = "pip install 'llm-gateway[drift]'"


def read_table(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return _read_csv_module(path)
    return _read_csv_arrow(path)


def csv_convert_options(column_types: dict[str, Any] | None = None) -> Any:
    import pyarrow.csv as pcsv

    # No bool or timestamp inference: those stay text, as the csv-module reader has always read them.
    return pcsv.ConvertOptions(true_values=[], false_values=[], timestamp_parsers=[],
                               column_types=column_types or {})


def csv_column_types(head: bytes) -> dict[str, Any]:
    """Column types from the file's first rows: numbers as float64, the rest as text. Arrow infers
    types by trying each one per column, which halves its reading speed; given them, it parses
    straight away (a column typed numeric here that holds text further down is read again untyped)."""
    import io as _io

    import pyarrow as pa
    import pyarrow.csv as pcsv

    cut = head.rfind(b"\n")
    sample = pcsv.read_csv(_io.BytesIO(head[:cut + 1] if cut > 0 else head), convert_options=csv_convert_options())
    return {f.name: pa.float64() if is_numeric_type(f.type) else pa.string() for f in sample.schema
            if not pa.types.is_null(f.type)}  # empty so far: left to Arrow


def _read_csv_arrow(path: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    header = _header(path)
    try:
        with open(path, "rb") as f:
            types = csv_column_types(f.read(1 << 20))
        try:
            table = pcsv.read_csv(path, convert_options=csv_convert_options(types))
        except pa.ArrowInvalid:  # text further down a column that began with numbers: let Arrow infer
            table = pcsv.read_csv(path, convert_options=csv_convert_options())
    except pa.ArrowInvalid as e:
        raise ValueError(_csv_problem(path, len(header)) or f"{path}: {str(e).split(':')[0]}") from None
    return arrow_columns(table)


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise ValueError(f"{path}: empty file (a header row naming the columns is needed)") from None
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in the header")
    return header


def _csv_problem(path: Path, width: int) -> str | None:
    """The first row whose width differs from the header's, as path:line (Arrow's own message quotes
    the row's values instead)."""
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if len(row) != width:
                return f"{path}:{line}: {len(row)} values, but the header has {width} columns"
    return None


def _read_csv_module(path: Path) -> dict[str, np.ndarray]:
    header = _header(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        rows = list(reader)
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
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow ({DRIFT_EXTRA}), or use CSV") from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
    return arrow_columns(table)


def is_numeric_type(t: Any) -> bool:
    import pyarrow.types as pat

    return pat.is_integer(t) or pat.is_floating(t) or pat.is_decimal(t) or pat.is_boolean(t)


def arrow_columns(table: Any, *, keep_text_as_arrow: bool = False) -> dict[str, Any]:
    """Arrow table or record batch -> {name: numpy array}: numbers as float (nulls NaN; float32 kept),
    everything else as text (object arrays of str / None). `keep_text_as_arrow`: text columns stay
    Arrow arrays, which the streaming engine counts in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type  # an Array, or a ChunkedArray (to_numpy copies its chunks once, into one array)
        if is_numeric_type(t):
            target = pa.float32() if t == pa.float32() else pa.float64()
            arr = col.cast(target) if t != target else col
            out[name] = arr.to_numpy(zero_copy_only=False)  # nulls become NaN in floating arrays
        else:
            text = col if pa.types.is_string(t) or pa.types.is_large_string(t) else pc.cast(col, pa.string())
            out[name] = text if keep_text_as_arrow else np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    return out


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
