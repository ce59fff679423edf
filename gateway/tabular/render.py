"""Drift reports as a terminal table or a self-contained HTML page with per-feature histograms."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from gateway.stats.drift import DriftReport, NumericRef, Profile, picture_categories


def table(report: DriftReport) -> str:
    lines = [f"Reference: {report.profile['source'] or '(profile)'} ({report.profile['rows']:,} rows, "
             f"{report.profile['content_hash'][:19]}...); current: {report.current_rows:,} rows"]
    lines.append(engine_line(report))
    lines += [f"! {p}" for p in report.problems]
    lines.append(f"{'column':<24}{'kind':<12}{'test':<12}{'value':>10}{'thresh':>8}{'effect':>16}  drift")
    for c in report.columns:
        if c.test is None:
            lines.append(f"{c.column:<24}{c.kind:<12}{'-':<12}{'':>10}{'':>8}{'':>16}  -   {c.note or ''}")
            continue
        value = c.p_adjusted if c.p_value is not None else c.value
        effect = ", ".join(f"{k}={v:.3f}" for k, v in c.effect_size.items())
        lines.append(f"{c.column:<24}{c.kind:<12}{c.test + (' (p adj)' if c.p_value is not None else ''):<12}"
                     f"{value:>10.4g}{c.threshold:>8.3g}{effect:>16}  {'YES' if c.drifted else 'no'}"
                     + (f"   {c.note}" if c.note else ""))
    lines.append(f"Dataset drift: {'YES' if report.dataset_drift else 'no'} - {report.drifted_columns} of "
                 f"{sum(c.test is not None for c in report.columns)} columns drifted "
                 f"({report.share_drifted:.0%}; threshold {report.dataset_threshold:.0%}; p-values {report.correction}-adjusted)")
    return "\n".join(lines)


def engine_line(report: DriftReport) -> str:
    e = report.engine
    if not e:
        return "Engine: (not recorded)"
    line = (f"Engine: {e['name']}" + (f" on {e['scheduler']}" if e.get("scheduler") else "")
            + f", {e['rows_read']:,} rows read" + (f" from {e['files']} file(s)" if e.get("files") else "")
            + f" in {e['wall_s']:.2f} s")
    sketched = e.get("sketched_columns") or []
    if sketched:
        line += f"; KS/Wasserstein from a KLL sketch for {len(sketched)} column(s): {', '.join(sketched)}"
    return line


def page(report: DriftReport, profile: Profile) -> str:
    rows = []
    for c in report.columns:
        ref = profile.columns[c.column]
        chart = _chart(ref, c.histogram)
        status = "drift" if c.drifted else "ok"
        value = "-" if c.value is None else f"{(c.p_adjusted if c.p_value is not None else c.value):.4g}"
        rows.append(f"<tr class={status}><td>{html.escape(c.column)}</td><td>{c.kind}</td><td>{c.test or '-'}</td>"
                    f"<td>{value}</td><td>{'' if c.threshold is None else f'{c.threshold:g}'}</td>"
                    f"<td>{'YES' if c.drifted else 'no'}</td><td>{chart}</td>"
                    f"<td>{html.escape(c.note or '')}</td></tr>")
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in report.problems)
    return (
        "<!doctype html><meta charset=utf-8><title>Drift report</title><style>"
        "body{font:14px system-ui;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd;vertical-align:middle}"
        "tr.drift td:first-child{border-left:4px solid #c33}.ref{fill:#8aa9d6}.cur{fill:#e08a3c;opacity:.75}</style>"
        f"<h1>Drift report</h1><p>Reference {html.escape(report.profile['source'] or '')} "
        f"({report.profile['rows']:,} rows, {html.escape(report.profile['content_hash'])}); "
        f"current {report.current_rows:,} rows. {html.escape(engine_line(report))}. Dataset drift: <b>{'YES' if report.dataset_drift else 'no'}</b> "
        f"({report.drifted_columns} columns, {report.share_drifted:.0%}; threshold {report.dataset_threshold:.0%}).</p>"
        f"<ul>{problems}</ul><p><svg width=12 height=12><rect class=ref width=12 height=12/></svg> reference "
        "<svg width=12 height=12><rect class=cur width=12 height=12/></svg> current</p>"
        "<table><tr><th>column</th><th>kind</th><th>test</th><th>value</th><th>threshold</th><th>drift</th>"
        f"<th>distribution</th><th>note</th></tr>{''.join(rows)}</table>")


def _chart(ref: Any, cur_p: list[float] | None, width: int = 240, height: int = 48) -> str:
    if cur_p is None:
        return ""
    if isinstance(ref, NumericRef):
        ref_p = np.asarray(ref.hist_props)
    else:
        total_ref = sum(ref.counts.values()) or 1
        ref_p = np.array([ref.counts[k] / total_ref for k in picture_categories(ref)])
    cur_p = np.asarray(cur_p)
    top = max(ref_p.max(initial=0), cur_p.max(initial=0)) or 1
    w = width / max(len(ref_p), 1)
    bars = []
    for i, (r, c) in enumerate(zip(ref_p, cur_p)):
        for cls, v in (("ref", r), ("cur", c)):
            h = height * v / top
            bars.append(f"<rect class={cls} x={i * w:.1f} y={height - h:.1f} width={w * 0.9:.1f} height={h:.1f}/>")
    return f"<svg width={width} height={height}>{''.join(bars)}</svg>"
def model_table(model: dict) -> str:
    lines = [""]
    pred = model.get("prediction_drift")
    if pred is not None:
        value = pred["p_adjusted"] if pred["p_value"] is not None else pred["value"]
        lines.append(f"Prediction drift (label-free proxy): {pred['column']} {pred['test']} = {value:.4g} "
                     f"(threshold {pred['threshold']:g}) -> {'YES' if pred['drifted'] else 'no'}")
    if model.get("performance_note"):
        lines.append(model["performance_note"])
    for c in model.get("performance", []):
        lines.append(f"{model['task']} {c['metric']:<10} reference {c['reference']:.4g}  current {c['current']:.4g}  "
                     f"p = {c['p_value']:.3g}  {'WORSE' if c['worse'] else 'ok'}")
    if "labelled" in model:
        lines.append(f"(labelled rows: {model['labelled']['reference']:,} reference, {model['labelled']['current']:,} current)")
    return "\n".join(lines)


def model_html(model: dict) -> str:
    return "<h2>Model</h2><pre>" + html.escape(model_table(model)) + "</pre>"
