"""`gateway drift fit REF -o ref.profile` and `gateway drift report --reference REF|PROFILE --current CUR`."""

from __future__ import annotations

import argparse
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
    r.add_argument("--current", required=True)
    r.add_argument("--format", default="table", choices=["table", "json", "html"])
    r.add_argument("--rules", help='per-column tests, JSON: {"price": {"test": "psi", "threshold": 0.2}}')
    r.add_argument("--dataset-threshold", type=float, default=0.5, help="share of drifted columns (default 0.5)")
    r.add_argument("--correction", default="holm", choices=["holm", "bh"])
    r.add_argument("-o", "--output", help="write the report here instead of standard output")


def main(args: argparse.Namespace) -> int:
    from gateway.stats import drift
    from gateway.tabular import render
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
            profile = drift.fit(raw_reference, source=str(reference_path), content_hash=file_hash(reference_path))
        current = read_table(Path(args.current))
        rules = {k: drift.ColumnRule(**v) for k, v in json.loads(args.rules).items()} if args.rules else None
        report = drift.compare(profile, current, rules=rules, dataset_threshold=args.dataset_threshold,
                               correction=args.correction, reference=raw_reference)
    except (ValueError, OSError, TypeError, json.JSONDecodeError) as e:
        print(f"gateway drift: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        out = json.dumps(report.to_json(), indent=2, default=float)
    elif args.format == "html":
        out = render.page(report, profile, current)
    else:
        out = render.table(report)
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
        print(f"report written to {args.output}")
    else:
        print(out)
    return 0


def _looks_like_profile(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(1) == "{"
    except (OSError, UnicodeDecodeError):
        return False
