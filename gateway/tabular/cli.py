"""`gateway drift fit REF -o ref.profile` and `gateway drift report --reference REF|PROFILE --current CUR`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="drift_command", required=True, metavar="ACTION")
    f = sub.add_parser("fit", help="profile a reference dataset once (bins, categories, quantile sketch, lineage)")
    f.add_argument("reference", help="CSV (or Parquet with pyarrow)")
    f.add_argument("-o", "--output", required=True, help="where to write the profile (JSON)")
    r = sub.add_parser("report", help="compare a current window with a reference dataset or profile")
    r.add_argument("--reference", required=True, help="a dataset, or a profile written by `gateway drift fit`")
    r.add_argument("--current", required=True,
                   help="the window: a CSV or Parquet file, a directory or glob of them, or a URL (s3://..., any fsspec one)")
    r.add_argument("--engine", default="auto", choices=["auto", "memory", "stream", "dask"],
                   help="memory: read the window whole (exact); stream: in batches, bounded memory; dask: on a cluster "
                        "(--scheduler); auto (default): memory for one file that fits, else stream")
    r.add_argument("--scheduler", help="Dask scheduler address for --engine dask, e.g. tcp://10.0.0.5:8786")
    r.add_argument("--batch-rows", type=int, default=262_144, help="rows per batch for stream and dask (default 262144)")
    r.add_argument("--exact-memory-mb", type=int, default=256,
                   help="numeric values kept for exact KS and Wasserstein before the stream switches to a KLL sketch "
                        "(default 256 MB)")
    r.add_argument("--format", default="table", choices=["table", "json", "html"])
    r.add_argument("--rules", help='per-column tests, JSON: {"price": {"test": "psi", "threshold": 0.2}}')
    r.add_argument("--dataset-threshold", type=float, default=0.5, help="share of drifted columns (default 0.5)")
    r.add_argument("--correction", default="holm", choices=["holm", "bh"])
    r.add_argument("--target", help="label column: compare model performance (needs the raw reference data)")
    r.add_argument("--prediction", help="prediction column (probability or value): prediction drift, performance")
    r.add_argument("-o", "--output", help="write the report here instead of standard output")


def main(args: argparse.Namespace) -> int:
    from gateway.stats import drift
    from gateway.tabular import engines, render
    from gateway.tabular.io import file_hash, read_table

    try:
        if args.drift_command == "fit":
            data = read_table(Path(args.reference))
            profile = drift.fit(data, source=str(args.reference), content_hash=file_hash(Path(args.reference)))
            profile.save(Path(args.output))
            print(f"profile of {profile.rows:,} rows x {len(profile.columns)} columns written to {args.output} "
                  f"({', '.join(f'{k}: {v}' for k, v in profile.schema.items())})")
            return 0
        reference_path = Path(args.reference)
        raw_reference = None
        if reference_path.suffix == ".profile" or _looks_like_profile(reference_path):
            profile = drift.Profile.load(reference_path)
        else:
            raw_reference = read_table(reference_path)
            profile = drift.fit(raw_reference, source=str(reference_path), content_hash=file_hash(reference_path),
                                keep_sample=True)
        rules = {k: drift.ColumnRule(**v) for k, v in json.loads(args.rules).items()} if args.rules else None
        model_columns = {c for c in (args.target, args.prediction) if c}
        if args.batch_rows <= 0 or args.exact_memory_mb < 0:
            raise ValueError("--batch-rows must be positive and --exact-memory-mb zero or more")
        options = engines.Options(args.engine, args.scheduler, args.batch_rows, args.exact_memory_mb << 20, rules,
                                  args.dataset_threshold, args.correction, ignore=model_columns)
        features = dataclasses.replace(profile, columns={k: v for k, v in profile.columns.items()
                                                         if k not in model_columns})
        report, current = engines.run(features, args.current, options)
        if model_columns:
            if current is None:
                raise ValueError("--target/--prediction compare the model's outputs row by row: they need the window "
                                 "in memory (--engine memory)")
            for c in model_columns:
                if c not in profile.columns or c not in current:
                    raise ValueError(f"column {c!r} (--target/--prediction) is not in both the reference and the "
                                     "current data")
        model = _model_section(args, profile, raw_reference, current) if model_columns else None
    except (ValueError, OSError, TypeError, json.JSONDecodeError) as e:
        print(f"gateway drift: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        out = json.dumps({**report.to_json(), **({"model": model} if model else {})}, indent=2, default=float)
    elif args.format == "html":
        out = render.page(report, profile) + (render.model_html(model) if model else "")
    else:
        out = render.table(report) + (render.model_table(model) if model else "")
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
        print(f"report written to {args.output}")
    else:
        print(out)
    return 0


def _model_section(args, profile, reference, current) -> dict:
    """Prediction drift (label-free) and, with labels on both sides, performance change."""
    import numpy as np

    from gateway.stats import concept, drift

    out: dict = {}
    if args.prediction:
        pred = drift.compare_column(args.prediction, profile.columns[args.prediction], current[args.prediction],
                                    ref_sample=reference.get(args.prediction) if reference else None)
        out["prediction_drift"] = dataclasses.asdict(drift.settle_alone(pred))
    if args.target and args.prediction:
        if reference is None:
            out["performance_note"] = ("performance needs the reference data with labels: pass the dataset as "
                                       "--reference, not its profile")
            return out
        ry, rp = reference[args.target].astype(float), reference[args.prediction].astype(float)
        cy, cp = current[args.target].astype(float), current[args.prediction].astype(float)
        keep_r, keep_c = ~(np.isnan(ry) | np.isnan(rp)), ~(np.isnan(cy) | np.isnan(cp))  # labels arrive late
        ry, rp, cy, cp = ry[keep_r], rp[keep_r], cy[keep_c], cp[keep_c]
        binary = set(np.unique(np.concatenate([ry, cy]))) <= {0.0, 1.0} and rp.min() >= 0 and rp.max() <= 1
        out["task"] = "classification" if binary else "regression"
        out["labelled"] = {"reference": int(ry.size), "current": int(cy.size)}
        changes = (concept.classification_change(ry, rp, cy, cp) if binary else concept.regression_change(ry, rp, cy, cp))
        out["performance"] = [dataclasses.asdict(c) for c in changes]
    return out


def _looks_like_profile(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(1) == "{"
    except (OSError, UnicodeDecodeError):
        return False
