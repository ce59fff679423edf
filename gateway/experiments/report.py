"""`gateway ab report` and `GET /v1/experiments/{name}`: aggregate in SQL, analyse in numpy/scipy."""

from __future__ import annotations

import html
import json
import math
import time
from typing import Any

from gateway.experiments.analysis import MetricData, analyse
from gateway.experiments.config import Experiment
from gateway.stats.ab import Summary

# Request-level metrics every LLM experiment gets from the ledger, next to its declared outcomes:
# (name, kind, lower is better, experiment_stats columns: count, sum, sum of squares)
BUILTIN = [
    ("error_rate", "proportion", ("n", "errors", None)),
    ("guardrail_block_rate", "proportion", ("n", "blocks", None)),
    ("latency_ms", "mean", ("n", "latency_sum", "latency_sq")),
    ("cost_usd", "mean", ("cost_n", "cost_sum", "cost_sq")),
    ("tokens", "mean", ("n", "tokens_sum", "tokens_sq")),
]


def build_report(ledger: Any, exp: Experiment, now: float | None = None) -> dict[str, Any]:
    """`ledger`: a ledger reader (gateway/state/ledger.py open_reader); LedgerUnavailable if unreadable."""
    now = time.time() if now is None else now
    units, first_ts = _units(ledger, exp.name)
    metrics = [_feedback_metric(ledger, exp, name, units) for name in exp.metrics]
    metrics += _builtin(ledger, exp.name)
    days = (now - first_ts) / 86400 if first_ts else 0.0
    return analyse(exp, metrics, units, days)


def _units(ledger: Any, experiment: str) -> tuple[dict[str, int], float | None]:
    rows = ledger.query("SELECT variant, COUNT(*), MIN(first_ts) FROM experiment_units WHERE experiment = ? "
                        "GROUP BY variant", (experiment,))
    return {v: n for v, n, _ in rows}, min((ts for _, _, ts in rows), default=None)


def _feedback_metric(ledger: Any, exp: Experiment, name: str, units: dict[str, int]) -> MetricData:
    spec = exp.metrics[name]
    per_variant = {}
    if spec.type == "proportion":
        # A unit converted if any of its outcomes was 1; units without feedback count as 0.
        rows = ledger.query("SELECT variant, SUM(CASE WHEN max_value >= 1 THEN 1 ELSE 0 END) FROM feedback_units "
                            "WHERE experiment = ? AND metric = ? GROUP BY variant", (exp.name, name))
        successes = dict(rows)
        for variant, n in units.items():
            if n:
                per_variant[variant] = Summary.proportion(min(int(successes.get(variant, 0)), n), n)
    else:
        # A unit's value is the mean of its outcomes; units that gave none are not counted.
        rows = ledger.query("SELECT variant, COUNT(*), SUM(total / n), SUM((total / n) * (total / n)) "
                            "FROM feedback_units WHERE experiment = ? AND metric = ? GROUP BY variant",
                            (exp.name, name))
        per_variant = {v: Summary.from_sums(n, s, sq) for v, n, s, sq in rows}
    return MetricData(name, spec.type, spec.higher_is_better, per_variant, "feedback")


_STATS = ("variant", "n", "errors", "blocks", "latency_sum", "latency_sq", "cost_n", "cost_sum", "cost_sq",
          "tokens_sum", "tokens_sq")


def _builtin(ledger: Any, experiment: str) -> list[MetricData]:
    rows = [dict(zip(_STATS, r)) for r in
            ledger.query(f"SELECT {', '.join(_STATS)} FROM experiment_stats WHERE experiment = ?", (experiment,))]
    out = []
    for name, kind, (count, total, total_sq) in BUILTIN:
        per_variant = {}
        for row in rows:
            n = row[count]
            if n:
                per_variant[row["variant"]] = (Summary.proportion(int(row[total]), n) if kind == "proportion"
                                               else Summary.from_sums(n, row[total], row[total_sq]))
        out.append(MetricData(name, kind, False, per_variant, "ledger"))
    return out


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, default=float)
    if fmt == "html":
        return _html(report)
    lines = [f"Experiment {report['experiment']} - control variant: {report['control']}, "
             f"{report['days_running']} day(s) of data"]
    lines.append("  ".join(f"{v['name']}: {v['units']:,} units" + (" (removed)" if v["removed"] else "")
                           for v in report["variants"]))
    srm = report["srm"]
    lines.append(f"Sample ratio: p = {srm['p_value']:.3g} ({'MISMATCH' if srm['mismatch'] else 'ok'})")
    lines.append("")
    header = f"{'metric':<22}{'variant':<12}{'control':>12}{'treatment':>12}{'lift':>9}{'lift 95% CI':>21}" \
             f"{'p':>9}{'p always':>10}{'P(better)':>10}"
    lines.append(header)
    for r in report["comparisons"]:
        if r["status"] != "ok":
            lines.append(f"{r['metric']:<22}{r['variant']:<12}{'(not enough data)':>24}")
            continue
        lo, hi = r["lift_ci"]
        lift = "-" if math.isnan(r["lift"]) else f"{r['lift']:+.1%}"  # no relative lift from a zero control
        ci = "-" if math.isnan(lo) else f"[{lo:+.1%}, {hi:+.1%}]"
        lines.append(f"{r['metric']:<22}{r['variant']:<12}{r['control']['mean']:>12.4g}{r['treatment']['mean']:>12.4g}"
                     f"{lift:>9}{ci:>21}{r['p_value_holm']:>9.3g}"
                     f"{r['always_valid_p_holm']:>10.3g}{r['chance_to_beat_control']:>10.1%}")
    lines += ["", "p: fixed-horizon, Holm-adjusted (valid only at a planned end); p always: always-valid "
              "(mSPRT), Holm-adjusted - safe to read at any time.", ""]
    decision = report["decision"] or ["-"]
    lines += [f"Decision: {decision[0]}", *(f"          {d}" for d in decision[1:])]  # one heading, reasons beneath
    return "\n".join(lines)


def _lift(r: dict[str, Any]) -> str:
    if math.isnan(r["lift"]):
        return "-"
    return f"{r['lift']:+.1%} [{r['lift_ci'][0]:+.1%}, {r['lift_ci'][1]:+.1%}]"


def _html(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['metric'])}</td><td>{html.escape(r['variant'])}</td>"
        + ("<td colspan=6>not enough data</td>" if r["status"] != "ok" else
           f"<td>{r['control']['mean']:.4g}</td><td>{r['treatment']['mean']:.4g}</td><td>{_lift(r)}</td>"
           f"<td>{r['p_value_holm']:.3g}</td>"
           f"<td>{r['always_valid_p_holm']:.3g}</td><td>{r['chance_to_beat_control']:.1%}</td>") + "</tr>"
        for r in report["comparisons"])
    decision = "".join(f"<li>{html.escape(d)}</li>" for d in report["decision"])
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(report['experiment'])}</title>"
            "<style>body{font:14px system-ui;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
            f"<h1>Experiment {html.escape(report['experiment'])}</h1><ul>{decision}</ul>"
            "<table><tr><th>metric</th><th>variant</th><th>control</th><th>treatment</th><th>lift (95% CI)</th>"
            f"<th>p (Holm)</th><th>p always-valid (Holm)</th><th>P(better)</th></tr>{rows}</table>")
