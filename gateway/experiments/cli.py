"""`gateway ab report NAME` and `gateway ab power`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.config.yamlfile import load_model
from gateway.errors import PolicyError
from gateway.experiments.config import ExperimentsFile


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", help="policies directory (default: $GATEWAY_POLICIES or ./policies)")
    p.add_argument("--state-dir", help="state directory (default: $GATEWAY_STATE_DIR or ./.gateway)")
    p.add_argument("--ledger", help="a SQLite ledger file (default: the ledger gateway.yaml's state.ledger names)")
    sub = p.add_subparsers(dest="ab_command", required=True, metavar="ACTION")
    r = sub.add_parser("report", help="per variant and metric: lift, p-values, chance to beat, SRM, decision")
    r.add_argument("name")
    r.add_argument("--format", default="table", choices=["table", "json", "html"])
    w = sub.add_parser("power", help="units per variant needed to detect an effect")
    w.add_argument("--baseline", type=float, required=True, help="control rate (proportion) or mean")
    w.add_argument("--mde", type=float, required=True, help="relative change to detect, e.g. 0.05 for 5%%")
    w.add_argument("--sd", type=float, help="standard deviation (means only; omit for a proportion)")
    w.add_argument("--alpha", type=float, default=0.05)
    w.add_argument("--power", type=float, default=0.8)
    w.add_argument("--ratio", type=float, default=1.0, help="treatment units per control unit")
    w.add_argument("--units-per-day", type=float, help="traffic, to say how many days that takes")


def main(args: argparse.Namespace, policies: Path) -> int:
    if args.ab_command == "power":
        return _power(args)
    path = policies / "experiments.yaml"
    if not path.is_file():
        print(f"gateway ab: no {path}", file=sys.stderr)
        return 2
    try:
        experiments = load_model(path, ExperimentsFile)[1].experiments
    except PolicyError as e:
        print("\n".join(f"gateway ab: {p}" for p in e.problems), file=sys.stderr)
        return 2
    exp = next((x for x in experiments if x.name == args.name), None)
    if exp is None:
        print(f"gateway ab: no experiment {args.name!r} in {path}; experiments: "
              f"{', '.join(x.name for x in experiments) or '(none)'}", file=sys.stderr)
        return 2
    from gateway.cli import ledger_reader
    from gateway.experiments.report import build_report, render

    ledger = ledger_reader(args, must_exist=False)  # no ledger yet: an empty report
    try:
        report = build_report(ledger, exp)
    except ValueError as e:
        print(f"gateway ab: {e}", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    print(render(report, args.format))
    return 0


def _power(args: argparse.Namespace) -> int:
    from gateway.stats import power  # scipy: imported only when needed, `gateway serve` starts without it

    target = args.baseline * (1 + args.mde)
    try:
        if args.sd is None:
            n_c, n_t = power.sample_size_proportions(args.baseline, target, alpha=args.alpha, power=args.power,
                                                     ratio=args.ratio)
        else:
            n_c, n_t = power.sample_size_means(target - args.baseline, args.sd, alpha=args.alpha,
                                               power=args.power, ratio=args.ratio)
    except ValueError as e:
        print(f"gateway ab power: {e}", file=sys.stderr)
        return 2
    kind = "rate" if args.sd is None else "mean"
    print(f"To detect {kind} {args.baseline:g} -> {target:g} ({args.mde:+.1%}) with alpha {args.alpha:g} (two-sided) "
          f"and power {args.power:.0%}: {n_c:,} control + {n_t:,} treatment units.")
    if args.units_per_day:
        print(f"At {args.units_per_day:,.0f} units/day in total: ~{(n_c + n_t) / args.units_per_day:.1f} days.")
    print("Looking at the results before then is safe with the report's always-valid p-values (the "
          "fixed-horizon p-value is only valid at that planned size).")
    return 0
