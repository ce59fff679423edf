"""Drift report engines: the same report from memory, from a stream of batches, or from a Dask cluster.

  memory  the window is read whole into numpy and compared (exact KS and Wasserstein).
  stream  the window is read in batches into mergeable partials (gateway/stats/drift_stream.py):
          memory stays bounded by the batch size plus the exact budget; past the budget KS and
          Wasserstein come from a KLL sketch, and the report names those columns.
  dask    each file is summarised on a Dask worker into the same partials, merged here; the
          workers must see the same paths (shared disk or object storage URLs).
  auto    memory for one file whose columns fit in the exact budget, else stream.

Every engine returns a DriftReport of the same form; its `engine` section records which engine
ran, the rows read, the wall time and the input files.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.stats import drift, drift_stream
from gateway.tabular import sources

ENGINES = ("auto", "memory", "stream", "dask")
DEFAULT_EXACT_BYTES = 256 << 20  # numeric values kept for exact KS/Wasserstein before switching to the sketch


@dataclass
class Options:
    engine: str = "auto"
    scheduler: str | None = None
    batch_rows: int = sources.DEFAULT_BATCH_ROWS
    exact_bytes: int = DEFAULT_EXACT_BYTES
    rules: dict[str, drift.ColumnRule] | None = None
    dataset_threshold: float = 0.5
    correction: str = "holm"
    ignore: set[str] = field(default_factory=set)  # columns of the window that are not features (labels, predictions)


def run(profile: drift.Profile, current: str, options: Options) -> tuple[drift.DriftReport, dict[str, np.ndarray] | None]:
    """The report on the window at `current` (a path, glob, directory or URL), and the window's
    columns when the memory engine read them whole (None otherwise)."""
    if options.engine not in ENGINES:
        raise ValueError(f"--engine {options.engine!r}: choose one of {', '.join(ENGINES)}")
    started = time.perf_counter()
    plain_file = "://" not in current and not sources.has_wildcards(current) and os.path.isfile(current)
    engine, ds = options.engine, None
    if engine == "auto" and plain_file and importlib.util.find_spec("pyarrow") is None:
        engine = "memory"  # a core install reads one CSV file with the csv module
    if engine != "memory" or not plain_file:
        ds = sources.open_dataset(current)
    if engine == "auto":
        engine = "memory" if _fits(ds, options) else "stream"
    if engine == "memory":
        return _memory(profile, current, ds, options, started)
    if engine == "dask" and not options.scheduler:
        raise ValueError("--engine dask needs --scheduler ADDRESS (the Dask scheduler, e.g. tcp://10.0.0.5:8786)")
    columns = [c for c in ds.schema() if c not in options.ignore]
    problems = drift.schema_problems(profile, columns)
    wanted = [c for c in profile.columns if c in columns]
    if engine == "stream":
        parts = ds.parts()
        partials, rows = summarise(ds, parts, profile, wanted, options.batch_rows, options.exact_bytes)
    else:
        partials, rows, parts = _dask(ds, profile, wanted, options)
    if rows == 0:
        raise ValueError(f"{current}: the window has no rows")
    results = drift_stream.results({c: profile.columns[c] for c in wanted}, partials, options.rules or {},
                                   profile.sorted_samples)
    report = drift.assemble(profile, results, problems, rows, dataset_threshold=options.dataset_threshold,
                            correction=options.correction,
                            engine={"name": engine, "rows_read": rows, "wall_s": round(time.perf_counter() - started, 3),
                                    "files": len(ds.files), "parts": len(parts), "input": current,
                                    "batch_rows": options.batch_rows,
                                    **({"scheduler": options.scheduler} if engine == "dask" else {})})
    return report, None


def _fits(ds: sources.Dataset, options: Options) -> bool:
    if len(ds.files) != 1:
        return False
    rows = ds.row_count()
    if rows is None:  # CSV: judge by the file's size (text is wider than the floats it becomes)
        return ds.filesystem.get_file_info(ds.files[0]).size <= options.exact_bytes
    return rows * max(len(ds.schema()), 1) * 8 <= options.exact_bytes


def _memory(profile: drift.Profile, current: str, ds: sources.Dataset | None, options: Options,
            started: float) -> tuple[drift.DriftReport, dict[str, np.ndarray]]:
    from gateway.tabular.io import read_table

    if ds is not None and len(ds.files) != 1:
        raise ValueError(f"{current}: {len(ds.files)} files; the memory engine reads one (use --engine stream)")
    data = read_table(ds.files[0] if ds is not None else current)
    report = drift.compare(profile, {k: v for k, v in data.items() if k not in options.ignore}, rules=options.rules,
                           dataset_threshold=options.dataset_threshold, correction=options.correction)
    report.engine.update(wall_s=round(time.perf_counter() - started, 3), files=1, input=current)
    return report, data


def summarise(ds: sources.Dataset, parts: list, profile: drift.Profile, wanted: list[str], batch_rows: int,
              exact_bytes: int) -> tuple[dict[str, Any], int]:
    """Partials of `parts` of the window (and how many rows they hold): the unit of work of stream and dask."""
    partials = drift_stream.partials_for({c: profile.columns[c] for c in wanted})
    rows = 0
    for batch in sources.batches(ds, wanted, batch_rows, parts):
        n = len(next(iter(batch.values()))) if batch else 0
        rows += n
        for name in wanted:
            partials[name].add(batch[name])
        if drift_stream.kept_values(partials) * 8 > exact_bytes:
            drift_stream.sketch_all(partials)
    return partials, rows


def _summarise_on_worker(spec: str, part: tuple, profile_columns: dict, wanted: list[str], batch_rows: int,
                         exact_bytes: int) -> tuple[dict[str, Any], int]:
    ds = sources.open_dataset(part[0] if "://" not in spec else spec)  # this part's file, as the worker sees it
    profile = drift.Profile(profile_columns, 0, "", spec)
    return summarise(ds, [part], profile, wanted, batch_rows, exact_bytes)


def _dask(ds: sources.Dataset, profile: drift.Profile, wanted: list[str], options: Options) -> tuple[dict[str, Any], int,
                                                                                                  list]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ValueError("--engine dask needs dask.distributed: pip install 'llm-gateway[dask]'") from None
    try:
        client = Client(options.scheduler, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ValueError(f"dask scheduler {options.scheduler}: unreachable ({type(e).__name__}: {e})") from None
    try:
        refs = {c: profile.columns[c] for c in wanted}
        workers = max(len(client.scheduler_info(n_workers=-1).get("workers", {})), 1)
        total = ds.row_count()
        parts = ds.parts(None if total is None else max(total // (4 * workers), options.batch_rows))
        # Each part may keep its share of the exact budget; merged here, past the budget it is sketched.
        share = options.exact_bytes // len(parts)
        futures = [client.submit(_summarise_on_worker, ds.spec, part, refs, wanted, options.batch_rows, share,
                                 pure=False) for part in parts]
        merged, rows = drift_stream.partials_for(refs), 0
        for future in as_completed(futures, loop=client.loop):
            try:
                partials, n = future.result()
            except ValueError:
                raise
            except Exception as e:  # a worker died or could not run the task: the report would be partial
                raise ValueError(f"dask worker failed on {ds.spec}: {type(e).__name__}: {e}") from None
            drift_stream.merge_all(merged, partials)
            rows += n
            if drift_stream.kept_values(merged) * 8 > options.exact_bytes:
                drift_stream.sketch_all(merged)
        return merged, rows, parts
    finally:
        client.close()
