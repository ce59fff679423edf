"""Where a drift window comes from: a file, a directory, a glob, or any fsspec URL, read in batches.

`open_dataset("data/2026-12-*.parquet")`, `open_dataset("s3://bucket/preds/")`: the files are
listed once, every file's schema is checked against the first one's (a mismatch names both files
and the column), and `batches()` reads them in Arrow record batches, so memory stays bounded by the
batch size whatever the window's length. Local paths and the filesystems built into pyarrow need
nothing more; other URLs (memory://, gcs://, abfs://, ...) use fsspec when the environment has it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.tabular.io import DRIFT_EXTRA, arrow_columns, csv_convert_options, is_numeric_type

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
DEFAULT_BATCH_ROWS = 262_144


def _arrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ValueError(f"reading windows in batches (directories, globs, URLs) needs pyarrow: {DRIFT_EXTRA}") from None
    return pyarrow


@dataclass(frozen=True)
class Dataset:
    spec: str  # what the user gave
    files: tuple[str, ...]  # paths within `filesystem`
    format: str  # "parquet" or "csv"
    filesystem: Any  # a pyarrow.fs.FileSystem
    # Parquet footers read so far, by file: the schema check, the row count and the parts all need
    # them, and on object storage each read is a request.
    _footers: dict = field(default_factory=dict, compare=False, repr=False)

    def footer(self, path: str) -> Any:
        if path not in self._footers:
            import pyarrow.parquet as pq

            self._footers[path] = _parquet_file(pq, self, path).metadata
        return self._footers[path]

    def open(self, path: str) -> Any:
        try:
            return self.filesystem.open_input_file(path)
        except (OSError, _arrow().ArrowInvalid) as e:
            raise ValueError(f"{path}: cannot be opened ({e})") from None

    def row_count(self) -> int | None:
        """Rows in the whole window from the Parquet footers (None for CSV: unknown before reading)."""
        if self.format != "parquet":
            return None
        return sum(self.footer(f).num_rows for f in self.files)

    def parts(self, target_rows: int | None = None) -> list[tuple[str, tuple[int, ...] | None]]:
        """Units of work: (file, Parquet row groups or None for all). With `target_rows`, big Parquet
        files are cut at row-group boundaries into parts of about that many rows, so one file can
        keep several Dask workers busy."""
        if target_rows is None or self.format != "parquet":
            return [(f, None) for f in self.files]
        out: list[tuple[str, tuple[int, ...] | None]] = []
        for f in self.files:
            meta = self.footer(f)
            group, rows = [], 0
            for i in range(meta.num_row_groups):
                group.append(i)
                rows += meta.row_group(i).num_rows
                if rows >= target_rows:
                    out.append((f, tuple(group)))
                    group, rows = [], 0
            if group:
                out.append((f, tuple(group)))
        return out

    def schema(self) -> dict[str, str]:
        """{column: "numeric" | "text"}, the same in every file, or a ValueError naming the file."""
        first, kinds = None, None
        for f in self.files:
            these = _kinds(self, f)
            if kinds is None:
                first, kinds = f, these
                continue
            if list(these) != list(kinds):
                missing = [c for c in kinds if c not in these]
                extra = [c for c in these if c not in kinds]
                what = (f"lacks {', '.join(missing)}" if missing else "") + ("; " if missing and extra else "") + \
                       (f"has {', '.join(extra)} extra" if extra else "") or "has the columns in another order"
                raise ValueError(f"{f}: its columns differ from {first}'s: it {what}")
            for c, k in these.items():
                if k != kinds[c] and "unknown" not in (k, kinds[c]):
                    raise ValueError(f"{f}: column {c!r} is {k} here but {kinds[c]} in {first}")
        return kinds or {}


def open_dataset(spec: str) -> Dataset:
    _arrow()
    import pyarrow.fs as pafs

    spec = str(spec)
    if "://" in spec and not spec.startswith("file://"):
        fs, root = _url_filesystem(spec, pafs)
        paths = _remote_listing(fs, root, spec, pafs)
    else:
        fs = pafs.LocalFileSystem()
        local = spec[len("file://"):] if spec.startswith("file://") else spec
        paths = _local_listing(local)
    if not paths:
        raise ValueError(f"{spec}: no Parquet or CSV files found there")
    formats = {FORMATS.get(Path(p).suffix.lower()) for p in paths}
    if None in formats or len(formats) > 1:
        odd = next((p for p in paths if FORMATS.get(Path(p).suffix.lower()) is None), paths[0])
        raise ValueError(f"{spec}: the files must all be .parquet or all .csv ({odd} is not like the others)")
    return Dataset(spec, tuple(paths), formats.pop(), fs)


def has_wildcards(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _local_listing(spec: str) -> list[str]:
    if has_wildcards(spec):
        return sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    path = Path(spec)
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
    if path.is_file():
        return [str(path)]
    raise ValueError(f"{spec}: no such file or directory")


def _url_filesystem(spec: str, pafs: Any) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        fsspec = None
    if fsspec is not None:
        try:
            fs, root = fsspec.core.url_to_fs(spec)
        except (ImportError, ValueError) as e:
            raise ValueError(f"{spec}: this environment cannot open that URL ({e})") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), root
    try:
        return pafs.FileSystem.from_uri(spec)
    except (OSError, ValueError) as e:
        raise ValueError(f"{spec}: this environment cannot open that URL ({e}); fsspec adds more schemes") from None


def _remote_listing(fs: Any, root: str, spec: str, pafs: Any) -> list[str]:
    try:
        if has_wildcards(root):
            base = root.split("*")[0].rsplit("/", 1)[0]
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
            import fnmatch

            return sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, root))
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            return [root]
        if info.type == pafs.FileType.NotFound:
            raise ValueError(f"{spec}: no such file or directory")
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except OSError as e:
        raise ValueError(f"{spec}: cannot list it ({e})") from None
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and Path(i.path).suffix.lower() in FORMATS)


def _parquet_file(pq: Any, ds: Dataset, path: str) -> Any:
    try:
        # pre_buffer off: Arrow would otherwise read ahead every column chunk of the file (a 5M-row file
        # of 20 columns held ~800 MB); read a row group at a time, peak memory is one row group's.
        return pq.ParquetFile(ds.open(path), pre_buffer=False)
    except (_arrow().ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None


def _kinds(ds: Dataset, path: str) -> dict[str, str]:
    if ds.format == "parquet":
        schema = ds.footer(path).schema.to_arrow_schema()
        return {f.name: "numeric" if is_numeric_type(f.type) else "text" for f in schema}
    import csv
    import io

    with ds.open(path) as f:
        first = f.read(1 << 16).split(b"\n")[0]
    header = next(csv.reader(io.StringIO(first.decode("utf-8"))), [])
    if not header:
        raise ValueError(f"{path}: empty file (a header row naming the columns is needed)")
    return {name: "unknown" for name in header}  # CSV types are known once read


def batches(ds: Dataset, columns: list[str] | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
            parts: list[tuple[str, tuple[int, ...] | None]] | None = None) -> Iterator[dict[str, Any]]:
    """The window's rows (or those of `parts`, see Dataset.parts), `batch_rows` at a time, as
    {column: numpy array (numbers) or Arrow array (text)}. A file that cannot be read stops the
    iteration with a ValueError naming it."""
    pa = _arrow()
    for path, row_groups in parts if parts is not None else ds.parts():
        try:
            if ds.format == "parquet":
                import pyarrow.parquet as pq

                pf = _parquet_file(pq, ds, path)
                groups = row_groups if row_groups is not None else range(pf.metadata.num_row_groups)
                reader = (b for g in groups for b in pf.iter_batches(batch_size=batch_rows, columns=columns,
                                                                     row_groups=[g]))
            else:
                import pyarrow.csv as pcsv

                reader = pcsv.open_csv(ds.open(path), read_options=pcsv.ReadOptions(block_size=max(batch_rows * 64, 1 << 20)),
                                       convert_options=csv_convert_options())
            for batch in reader:
                if columns is not None and ds.format == "csv":
                    batch = batch.select([c for c in columns if c in batch.schema.names])
                yield arrow_columns(batch, keep_text_as_arrow=True)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{path}: unreadable ({str(e).splitlines()[0][:200]})") from None
