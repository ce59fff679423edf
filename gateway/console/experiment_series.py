"""Each experiment metric's confidence sequence over time, for the console's charts: the same mSPRT as
`gateway ab report` (gateway/stats/sequential.py), evaluated on the data that existed at the end of
each day or hour. Because the sequence is always valid, every point on the chart is a valid interval
at its own time, and the last one equals the report's.

Request metrics come from experiment_hourly; feedback metrics from the per-unit rollups, placed at the
time of each unit's first outcome (its later outcomes count from then on, an approximation the page
states)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import Any

from gateway.experiments.config import Experiment
from gateway.experiments.report import BUILTIN
from gateway.metering.rollups import EXPERIMENT_SUMS
from gateway.stats.ab import Summary
from gateway.stats.sequential import msprt


def _cumulative(points: dict[str, dict[int, list[float]]]) -> dict[str, list[tuple[int, list[float]]]]:
    out = {}
    for variant, by_time in points.items():
        acc: list[float] | None = None
        series = []
        for t in sorted(by_time):
            acc = list(by_time[t]) if acc is None else [a + b for a, b in zip(acc, by_time[t])]
            series.append((t, acc))
        out[variant] = series
    return out


def _add(by: dict[str, dict[int, list[float]]], variant: str, t: int, values: list[float]) -> None:
    """Add `values` to the sums kept for (variant, time t)."""
    prev = by[variant].get(t)
    by[variant][t] = values if prev is None else [a + b for a, b in zip(prev, values)]


def _at(series: list[tuple[int, list[float]]], t: int) -> list[float] | None:
    """The running totals as they stood at time t (None before the first)."""
    i = bisect.bisect_right(series, t, key=lambda p: p[0])
    return series[i - 1][1] if i else None


def _sequence(exp: Experiment, cum: dict[str, list[tuple[int, list[float]]]], summarise) -> list[dict[str, Any]]:
    control = exp.control.name
    times = sorted({t for s in cum.values() for t, _ in s})
    out = []
    for v in exp.variants[1:]:
        points = []
        for t in times:
            c, tr = _at(cum.get(control, []), t), _at(cum.get(v.name, []), t)
            cs, ts = (summarise(c) if c else None), (summarise(tr) if tr else None)
            if cs is None or ts is None or cs.n < 2 or ts.n < 2:
                continue
            seq = msprt(cs, ts, alpha=exp.alpha)
            lo, hi = seq.ci
            points.append({"t": t, "diff": ts.mean - cs.mean, "lo": lo if math.isfinite(lo) else None,
                           "hi": hi if math.isfinite(hi) else None, "p": seq.p_value})
        out.append({"variant": v.name, "points": points})
    return out


def series(reader: Any, exp: Experiment, bucket_s: int) -> list[dict[str, Any]]:
    """[{metric, source, variants: [{variant, points: [{t, diff, lo, hi, p}]}]}] at `bucket_s` steps."""
    step = bucket_s // 3600
    cols = EXPERIMENT_SUMS
    rows = reader.query(f"SELECT variant, hour, {', '.join(cols)} FROM experiment_hourly WHERE experiment = ?",
                        (exp.name,))
    by: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for variant, hour, *sums in rows:
        _add(by, variant, (hour // step + 1) * step * 3600, [float(x or 0) for x in sums])
    cum = _cumulative(by)
    # In the report's order: the declared (feedback) metrics, then the ledger's.
    out = [{"metric": name, "source": "feedback", "variants": _feedback(reader, exp, name, spec, bucket_s)}
           for name, spec in exp.metrics.items()]
    for name, kind, (count, total, total_sq) in BUILTIN:
        i, j, k = cols.index(count), cols.index(total), cols.index(total_sq) if total_sq else None

        def summarise(acc, i=i, j=j, k=k, kind=kind):
            n = int(acc[i])
            if not n:
                return None
            return Summary.proportion(int(acc[j]), n) if kind == "proportion" else Summary.from_sums(n, acc[j], acc[k])

        out.append({"metric": name, "source": "ledger", "variants": _sequence(exp, cum, summarise)})
    return out


def _feedback(reader: Any, exp: Experiment, metric: str, spec, bucket_s: int) -> list[dict[str, Any]]:
    def end_of(ts: float) -> int:
        return (int(ts // bucket_s) + 1) * bucket_s

    by: dict[str, dict[int, list[float]]] = defaultdict(dict)

    if spec.type == "proportion":
        # Units assigned by then, and how many of them had converted (counted from their first outcome).
        for variant, ts in reader.query("SELECT variant, first_ts FROM experiment_units WHERE experiment = ?", (exp.name,)):
            _add(by, variant, end_of(ts), [1.0, 0.0])
        for variant, ts in reader.query("SELECT variant, first_ts FROM feedback_units WHERE experiment = ? AND metric = ? "
                                        "AND max_value >= 1", (exp.name, metric)):
            _add(by, variant, end_of(ts), [0.0, 1.0])
        summarise = (lambda acc: Summary.proportion(min(int(acc[1]), int(acc[0])), int(acc[0])) if acc[0] else None)
    else:
        for variant, ts, mean in reader.query("SELECT variant, first_ts, total / n FROM feedback_units WHERE experiment = ? "
                                              "AND metric = ?", (exp.name, metric)):
            _add(by, variant, end_of(ts), [1.0, float(mean), float(mean) * float(mean)])
        summarise = (lambda acc: Summary.from_sums(int(acc[0]), acc[1], acc[2]) if acc[0] else None)
    return _sequence(exp, _cumulative(by), summarise)
