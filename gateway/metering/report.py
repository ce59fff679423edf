"""`gateway usage`: aggregates over the ledger (in SQL), rendered as a table, JSON or CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from gateway.metering.ledger import connect

GROUPINGS = {
    "key": "COALESCE(key, '(no key)')",
    "model": "COALESCE(served_model, model, '(none)')",
    "day": "date(ts, 'unixepoch')",
    "prompt": "COALESCE(prompt_name || '@' || prompt_version, '(no prompt)')",
    "upstream": "COALESCE(upstream, '(none)')",
}
FIELDS = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "cost_usd",
          "unpriced", "estimated", "avg_latency_ms")
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


def usage_rows(path: Path, since: float, until: float, by: str) -> list[dict[str, Any]]:
    group = GROUPINGS[by]
    sql = f"""
        SELECT {group} AS name,
               COUNT(*) AS requests,
               SUM(status >= 400) AS errors,
               SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens),
               SUM(cost_usd),
               SUM(cost_usd IS NULL AND usage_source != 'none') AS unpriced,
               SUM(usage_source = 'estimated') AS estimated,
               AVG(latency_ms)
        FROM requests WHERE ts >= ? AND ts < ?
        GROUP BY name ORDER BY SUM(cost_usd) DESC, requests DESC"""
    conn = connect(path, readonly=True)
    try:
        result = conn.execute(sql, (since, until)).fetchall()
    except sqlite3.OperationalError as e:
        raise ValueError(f"{path}: not a usable gateway ledger ({e})") from None
    finally:
        conn.close()
    out = []
    for name, *values in result:
        row = {by: name}
        for field, value in zip(FIELDS, values):
            row[field] = round(value, 8) if field == "cost_usd" and value is not None else (
                round(value, 1) if field == "avg_latency_ms" and value is not None else value)
        out.append(row)
    return out


def render(rows: list[dict[str, Any]], by: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[by, *FIELDS])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    headers = [by, "requests", "errors", "input tok", "cached", "output tok", "cost USD", "unpriced", "estimated",
               "avg ms"]
    total = {by: "TOTAL", **{f: sum((r[f] or 0) for r in rows) for f in FIELDS if f != "avg_latency_ms"}}
    total["avg_latency_ms"] = None
    lines = []
    cells = [[_cell(r.get(f)) for f in (by, *FIELDS)] for r in [*rows, total]]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    for n, row in enumerate(cells):
        if n == len(cells) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    note = ("\nunpriced: requests whose served model has no price (cost unknown, not counted as $0); "
            "estimated: token counts by the gateway because the upstream sent none.")
    return "\n".join(lines) + note


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}" if value < 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
