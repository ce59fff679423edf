"""`gateway usage`: aggregates over the ledger (in SQL), rendered as a table, JSON or CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from typing import Any

from gateway.metering.ledger import COUNT_IF as count
from gateway.metering.outcome import FAILED, REFUSED

# Per grouping: the expression over raw rows, and (rollup dimension, expression over usage_hourly).
GROUPINGS = {
    "key": ("COALESCE(key, '(no key)')", "key", "CASE value WHEN '' THEN '(no key)' ELSE value END"),
    "model": ("COALESCE(model, '(none)')", "model", "CASE value WHEN '' THEN '(none)' ELSE value END"),
    "served": ("COALESCE(served_model, '(not served)')", "served",
               "CASE value WHEN '' THEN '(not served)' ELSE value END"),
    "day": ("{day:ts}", "key", "{day:hour * 3600}"),  # dates in the reader's SQL dialect (day_of)
    "prompt": ("COALESCE(prompt_name || '@' || prompt_version, '(no prompt)')", "prompt",
               "CASE value WHEN '' THEN '(no prompt)' ELSE value END"),
    "upstream": ("COALESCE(upstream, '(none)')", "upstream", "CASE value WHEN '' THEN '(none)' ELSE value END"),
}
FIELDS = ("requests", "errors", "refused", "input_tokens", "cached_tokens", "output_tokens", "cost_usd",
          "unpriced", "estimated", "avg_latency_ms", "cache_hits", "hit_rate", "saved_usd")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")


def parse_when(value: str, now: dt.datetime | None = None) -> float:
    """`2026-11-01`, `2026-11-01T12:00`, or relative to now: `30m`, `24h`, `7d`, `2w`. UTC."""
    now = now or dt.datetime.now(dt.UTC)
    m = _RELATIVE.match(value.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return (now - dt.timedelta(**{unit: float(m.group(1))})).timestamp()
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"cannot read {value!r} as a time: use 2026-11-01, 2026-11-01T12:00, or 7d / 24h / 30m") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def usage_rows(ledger: Any, since: float, until: float, by: str) -> list[dict[str, Any]]:
    """Whole hours come from the hourly rollup; the partial hours at either end from raw rows.
    `ledger`: a ledger reader (gateway/state/ledger.py); LedgerUnavailable if it cannot be read."""
    raw_expr, dim, rollup_expr = (in_dialect(ledger, e) for e in GROUPINGS[by])
    first_hour, end_hour = math.ceil(since / 3600), math.floor(until / 3600)
    raw_sql = f"""
        SELECT {raw_expr}, COUNT(*), {count(f"outcome = '{FAILED}'")}, SUM(input_tokens), SUM(cached_tokens),
               SUM(output_tokens), COALESCE(SUM(cost_usd), 0), COUNT(cost_usd),
               {count("cost_usd IS NULL AND usage_source != 'none'")}, {count("usage_source = 'estimated'")},
               COALESCE(SUM(latency_ms), 0), {count(f"outcome = '{REFUSED}'")}, {count("cache = 'hit'")},
               COALESCE(SUM(saved_usd), 0)
        FROM requests WHERE ts >= ? AND ts < ? GROUP BY 1"""
    rollup_sql = f"""
        SELECT {rollup_expr}, SUM(requests), SUM(errors), SUM(input_tokens), SUM(cached_tokens),
               SUM(output_tokens), SUM(cost_usd), SUM(priced), SUM(unpriced), SUM(estimated), SUM(latency_ms_sum),
               SUM(refused), SUM(cache_hits), SUM(saved_usd)
        FROM usage_hourly WHERE dim = ? AND hour >= ? AND hour < ? GROUP BY 1"""
    parts = []
    if first_hour < end_hour:
        parts += ledger.query(rollup_sql, (dim, first_hour, end_hour))
        parts += ledger.query(raw_sql, (since, first_hour * 3600))
        parts += ledger.query(raw_sql, (end_hour * 3600, until))
    else:
        parts += ledger.query(raw_sql, (since, until))
    totals: dict[str, list] = {}
    for name, *values in parts:
        acc = totals.setdefault(name, [0] * len(values))
        for i, v in enumerate(values):
            acc[i] += v or 0
    out = []
    for name, (requests, errors, inp, cached, output, cost, priced, unpriced, estimated, latency,
               refused, hits, saved) in totals.items():
        out.append({by: name, "requests": requests, "errors": errors, "refused": refused, "input_tokens": inp,
                    "cached_tokens": cached,
                    "output_tokens": output, "cost_usd": round(cost, 8) if priced else None,
                    "unpriced": unpriced, "estimated": estimated,
                    "avg_latency_ms": round(latency / requests, 1) if requests else None,
                    "cache_hits": hits, "hit_rate": round(hits / requests, 4) if requests else None,
                    "saved_usd": round(saved, 8)})
    out.sort(key=lambda r: (-(r["cost_usd"] or 0), -r["requests"]))
    return out


def in_dialect(ledger: Any, expr: str) -> str:
    if expr.startswith("{day:"):
        return ledger.day_of(expr[5:-1])
    return expr


def render(rows: list[dict[str, Any]], by: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[by, *FIELDS])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    headers = [by, "requests", "errors", "refused", "input tok", "cached", "output tok", "cost USD", "unpriced", "estimated",
               "avg ms", "cache hits", "hit %", "saved USD"]
    total = {by: "TOTAL", **{f: sum((r[f] or 0) for r in rows) for f in FIELDS if f not in ("avg_latency_ms", "hit_rate")}}
    total["avg_latency_ms"] = None
    total["hit_rate"] = round(total["cache_hits"] / total["requests"], 4) if total["requests"] else None
    lines = []
    cells = [[_cell(f, r.get(f)) for f in (by, *FIELDS)] for r in [*rows, total]]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    for n, row in enumerate(cells):
        if n == len(cells) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    note = ("\nerrors: failed requests (5xx, or a stream that broke after it started); refused: 4xx (bad input, "
            "keys, limits, guardrail blocks);\nunpriced: requests whose served model has no price (cost unknown, not "
            "counted as $0); estimated: token counts by the gateway because the upstream sent none;\ncache hits: "
            "answers served from the response cache (no upstream tokens); saved USD: what they had cost upstream.")
    return "\n".join(lines) + note


def _cell(field: str, value: Any) -> str:
    if value is None:
        return "-"
    if field in ("cost_usd", "saved_usd"):
        return f"{value:,.6f}" if value < 1000 else f"{value:,.2f}"
    if field == "hit_rate":
        return f"{value:.1%}"
    if field == "avg_latency_ms":
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
