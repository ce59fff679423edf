"""Turn per-variant aggregates into a report: tests, lifts, always-valid p-values, SRM, a decision.

Pure (no I/O): `report.py` fetches the aggregates from the ledger. Every treatment is compared with
the control (the first variant); p-values are Holm-adjusted across all metrics x variants, so looking
at many comparisons does not inflate false positives; the decision reads the always-valid p-values,
so the report may be opened every day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gateway.experiments.config import Experiment
from gateway.stats import ab, power
from gateway.stats.sequential import msprt


@dataclass(frozen=True, slots=True)
class MetricData:
    """One metric's per-variant data: Summary per variant name (proportions: mean = rate)."""

    name: str
    kind: str  # proportion | mean
    higher_is_better: bool
    per_variant: dict[str, ab.Summary]
    source: str  # feedback | ledger


def analyse(exp: Experiment, metrics: list[MetricData], units: dict[str, int], days_running: float) -> dict[str, Any]:
    control = exp.control.name
    configured = {v.name: v.weight for v in exp.variants}
    out: dict[str, Any] = {"experiment": exp.name, "control": control, "alpha": exp.alpha,
                           "days_running": round(days_running, 2), "variants": []}
    for name in [*configured, *sorted(set(units) - set(configured))]:
        out["variants"].append({"name": name, "weight": configured.get(name), "units": units.get(name, 0),
                                "removed": name not in configured})
    live = [v for v in exp.variants if v.weight > 0]
    srm = ab.sample_ratio_mismatch([units.get(v.name, 0) for v in live], [v.weight for v in live])
    out["srm"] = {"p_value": srm.p_value, "mismatch": srm.mismatch, "chi2": srm.chi2,
                  "expected_units": dict(zip([v.name for v in live], [round(e, 1) for e in srm.expected]))}

    rows: list[dict[str, Any]] = []
    for m in metrics:
        c = m.per_variant.get(control)
        for v in exp.variants[1:]:
            t = m.per_variant.get(v.name)
            row: dict[str, Any] = {"metric": m.name, "source": m.source, "kind": m.kind, "variant": v.name,
                                   "control": _describe(c), "treatment": _describe(t)}
            if c is None or t is None or c.n < 2 or t.n < 2:
                row["status"] = "not enough data"
                rows.append(row)
                continue
            if m.kind == "proportion":
                test = ab.z_test_proportions(round(c.mean * c.n), c.n, round(t.mean * t.n), t.n, exp.alpha)
                p_better = ab.chance_to_beat_proportions(round(c.mean * c.n), c.n, round(t.mean * t.n), t.n)
            else:
                test = ab.welch_test(c, t, exp.alpha)
                p_better = ab.chance_to_beat_means(c, t)
            lift, lift_ci = ab.relative_lift(c, t, exp.alpha)
            seq = msprt(c, t, alpha=exp.alpha)
            row.update(status="ok", diff=test.diff, diff_ci=test.ci, lift=lift, lift_ci=lift_ci,
                       p_value=test.p_value, always_valid_p=seq.p_value, confidence_sequence=seq.ci,
                       chance_to_beat_control=p_better if m.higher_is_better else 1 - p_better)
            rows.append(row)
    tested = [r for r in rows if r["status"] == "ok"]
    for key in ("p_value", "always_valid_p"):
        for r, adjusted in zip(tested, ab.holm([r[key] for r in tested])):
            r[f"{key}_holm"] = adjusted
    out["comparisons"] = rows
    out["decision"] = _decide(exp, metrics, tested, units, srm, days_running)
    return out


def _describe(s: ab.Summary | None) -> dict[str, Any] | None:
    return None if s is None else {"n": s.n, "mean": s.mean, "sd": math.sqrt(s.var) if s.var == s.var else None}


def _decide(exp: Experiment, metrics: list[MetricData], tested: list[dict[str, Any]], units: dict[str, int],
            srm: ab.SRMResult, days_running: float) -> list[str]:
    lines = []
    if srm.mismatch:
        lines.append(f"Sample ratio mismatch (p = {srm.p_value:.2g}): units are not split as configured. "
                     "Fix assignment or logging before trusting any result below.")
    for v in exp.variants:
        if units.get(v.name, 0) == 0 and v.weight > 0:
            lines.append(f"Variant {v.name!r} has no traffic yet.")
    if not metrics:
        return lines + ["No metrics to compare yet."]
    primary = metrics[0]
    by_metric = {m.name: m for m in metrics}
    for r in tested:
        if r["always_valid_p_holm"] < exp.alpha:
            m = by_metric[r["metric"]]
            better = (r["diff"] > 0) == m.higher_is_better
            lines.append(f"{r['variant']} is {'better' if better else 'worse'} than {exp.control.name} on {r['metric']}: "
                         f"{r['lift']:+.1%} (95% CI {r['lift_ci'][0]:+.1%} to {r['lift_ci'][1]:+.1%}); "
                         f"always-valid p = {r['always_valid_p_holm']:.3g} after Holm.")
    if not any(r["always_valid_p_holm"] < exp.alpha for r in tested if r["metric"] == primary.name):
        lines.append(f"No significant difference on {primary.name} yet. " + _planning(exp, primary, units, days_running))
    return lines


def _planning(exp: Experiment, m: MetricData, units: dict[str, int], days_running: float) -> str:
    """Units each arm needs for the planned power at the configured split, and when the slower arm
    gets there at the traffic seen so far."""
    c = m.per_variant.get(exp.control.name)
    live = [v for v in exp.variants[1:] if v.weight > 0]
    if c is None or c.n < 2 or not c.mean or not live or exp.control.weight <= 0:
        return "Too little data on the control to plan."
    treatment = min(live, key=lambda v: v.weight)  # the smallest arm decides
    ratio = treatment.weight / exp.control.weight
    target = c.mean * (1 + exp.minimum_detectable_effect)
    try:
        if m.kind == "proportion" and 0 < c.mean < 1 and 0 < target < 1:
            n_c, n_t = power.sample_size_proportions(c.mean, target, alpha=exp.alpha, power=exp.power, ratio=ratio)
        else:
            n_c, n_t = power.sample_size_means(target - c.mean, math.sqrt(c.var), alpha=exp.alpha, power=exp.power,
                                               ratio=ratio)
    except ValueError:
        return "Cannot plan from the data so far."
    waits = [power.days_to_reach(n_c, units.get(exp.control.name, 0), days_running),
             power.days_to_reach(n_t, units.get(treatment.name, 0), days_running)]
    goal = (f"{n_c:,} {exp.control.name} and {n_t:,} {treatment.name} units detect a "
            f"{exp.minimum_detectable_effect:.0%} relative change with {exp.power:.0%} power")
    if any(w is None for w in waits):
        return f"{goal}; no traffic yet to estimate when."
    days = max(waits)
    if days == 0:
        return f"{goal}, and both arms have that many: the real effect is probably smaller."
    return f"{goal}; at current traffic that is reached in ~{math.ceil(days)} day(s)."
