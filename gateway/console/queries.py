"""What the console shows, read from the ledger (SQLite or PostgreSQL, through the same reader): series
and breakdowns from the hourly rollups, pages of raw rows. Synchronous (handlers run it in a thread),
no aiohttp: the same functions can serve a CLI or a test."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gateway.metering import rollups

BREAKDOWNS = ("key", "group", "model", "upstream")
_EMPTY = {"key": "(no key)", "group": "(no group)", "model": "(none)", "upstream": "(none)"}


@dataclass(frozen=True, slots=True)
class Window:
    """Whole hours [first_hour, end_hour), and the chart bucket: 1 (hour) or 24 (day) hours."""

    first_hour: int
    end_hour: int
    bucket_hours: int

    def buckets(self) -> list[int]:
        return list(range(self.first_hour, self.end_hour, self.bucket_hours))

    def bucket_sql(self) -> tuple[str, tuple[int, ...]]:
        """The first hour of an hour's chart bucket, in SQL (integer division in SQLite and PostgreSQL
        alike), so a month of hours is grouped into days by the database, not in Python."""
        return "? + ((hour - ?) / ?) * ?", (self.first_hour, self.first_hour, self.bucket_hours, self.bucket_hours)


    def latency_source(self) -> tuple[str, str, str, tuple[int, ...], tuple[int, int]]:
        """Where this window's latency histograms are read: (table, its period column, the chart bucket
        in SQL, that expression's args, the period range). A window in days is whole UTC days
        (window_for aligns it), so `latency_daily` holds exactly its rows, in 24x fewer of them."""
        if self.bucket_hours == 24 and self.first_hour % 24 == 0 and self.end_hour % 24 == 0:
            return "latency_daily", "day", "day * 24", (), (self.first_hour // 24, self.end_hour // 24)
        b, b_args = self.bucket_sql()
        return "latency_hourly", "hour", b, b_args, (self.first_hour, self.end_hour)


def _dim_filter(dim: str | None, value: str | None) -> tuple[str, tuple]:
    """One rollup dimension to read: a filtered one, or `key` (every row has exactly one key value,
    '' included, so its rows add up to all traffic)."""
    if dim and value is not None:
        return "dim = ? AND value = ?", (dim, "" if value == _EMPTY.get(dim) else value)
    return "dim = 'key'", ()


def overview(reader: Any, w: Window, dim: str | None = None, value: str | None = None) -> dict[str, Any]:
    cond, args = _dim_filter(dim, value)
    hours = (w.first_hour, w.end_hour)
    b, b_args = w.bucket_sql()
    rows = reader.query(f"""SELECT {b}, SUM(requests), SUM(errors), SUM(refused), SUM(input_tokens), SUM(output_tokens),
        SUM(cost_usd), SUM(latency_ms_sum), SUM(cache_hits), SUM(saved_usd) FROM usage_hourly
        WHERE {cond} AND hour >= ? AND hour < ? GROUP BY 1""", (*b_args, *args, *hours))
    table, period, start, start_args, span = w.latency_source()
    lat = reader.query(f"SELECT {start}, bucket, SUM(n) FROM {table} WHERE {cond} AND {period} >= ? AND {period} < ? "
                       "GROUP BY 1, bucket", (*start_args, *args, *span))
    fields = ("requests", "errors", "refused", "input_tokens", "output_tokens", "cost_usd")
    series = {b: dict.fromkeys(fields, 0) for b in w.buckets()}
    for start, *values in rows:  # rows and lat come grouped by chart bucket (Window.bucket_sql)
        acc = series[start]
        for f, v in zip(fields, values):
            acc[f] += v or 0
    hist: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    everything: dict[int, int] = defaultdict(int)
    for start, bucket, n in lat:
        hist[start][bucket] += n
        everything[bucket] += n
    for b, acc in series.items():
        acc["p50_ms"] = rollups.percentile(hist[b].items(), 0.5)
        acc["p95_ms"] = rollups.percentile(hist[b].items(), 0.95)
        acc["cost_usd"] = round(acc["cost_usd"], 8)
    names = ("requests", "errors", "refused", "input_tokens", "output_tokens", "cost_usd", "latency_sum", "cache_hits",
             "saved_usd")
    totals = {f: sum(r[i + 1] or 0 for r in rows) for i, f in enumerate(names)}
    totals["cost_usd"] = round(totals["cost_usd"], 8)
    totals["error_rate"] = totals["errors"] / totals["requests"] if totals["requests"] else None
    totals["p50_ms"] = rollups.percentile(everything.items(), 0.5)
    totals["p95_ms"] = rollups.percentile(everything.items(), 0.95)
    return {"series": [{"t": b * 3600, **v} for b, v in sorted(series.items())], "totals": totals}


def breakdown(reader: Any, w: Window, dim: str, limit: int = 50) -> list[dict[str, Any]]:
    """Per value of one dimension over the window (all traffic): the busiest `limit` values."""
    hours = (dim, w.first_hour, w.end_hour)
    rows = reader.query("""SELECT value, SUM(requests), SUM(errors), SUM(refused), SUM(input_tokens), SUM(output_tokens),
        SUM(cost_usd), SUM(unpriced) FROM usage_hourly WHERE dim = ? AND hour >= ? AND hour < ? GROUP BY value""", hours)
    lat: dict[str, dict[int, int]] = defaultdict(dict)
    table, period, _, _, span = w.latency_source()
    for value, bucket, n in reader.query(f"SELECT value, bucket, SUM(n) FROM {table} WHERE dim = ? AND {period} >= ? "
                                         f"AND {period} < ? GROUP BY value, bucket", (dim, *span)):
        lat[value][bucket] = n
    out = []
    for value, requests, errors, refused, inp, output, cost, unpriced in rows:
        out.append({"value": value or _EMPTY[dim], "requests": requests, "errors": errors, "refused": refused,
                    "error_rate": errors / requests if requests else None, "input_tokens": inp,
                    "output_tokens": output, "cost_usd": round(cost or 0, 8), "unpriced": unpriced,
                    "p50_ms": rollups.percentile(lat[value].items(), 0.5),
                    "p95_ms": rollups.percentile(lat[value].items(), 0.95)})
    out.sort(key=lambda r: (-r["cost_usd"], -r["requests"], r["value"]))
    return out[:limit]


def spend_since(reader: Any, dim: str, since_hour: int) -> dict[str, float]:
    """USD per key or group value since an hour (budgets: a UTC day or month starts on an hour)."""
    rows = reader.query("SELECT value, SUM(cost_usd) FROM usage_hourly WHERE dim = ? AND hour >= ? GROUP BY value",
                        (dim, since_hour))
    return {v: c or 0.0 for v, c in rows}


def budgets(reader: Any, scopes: list[tuple[str, str, Any]], now: float, day_start: float, month_start: float,
            month_end: float) -> list[dict[str, Any]]:
    """Each key or group budget: used vs limit, and when it runs out at the rate of this period so far
    (None: not before the period resets)."""
    out = []
    spend = {d: {p: spend_since(reader, d, int(start // 3600)) for p, start in (("day", day_start), ("month", month_start))}
             for d in ("key", "group") if any(s[0] == d for s in scopes)}
    for dim, name, limits in scopes:
        for period, limit, start, end in (("day", limits.usd_per_day, day_start, day_start + 86400),
                                          ("month", limits.usd_per_month, month_start, month_end)):
            if limit is None:
                continue
            used = spend[dim][period].get(name, 0.0)
            rate = used / max(now - start, 60.0)  # USD per second this period
            runs_out = None
            if used >= limit:
                runs_out = now
            elif rate > 0 and now + (limit - used) / rate < end:
                runs_out = now + (limit - used) / rate
            out.append({"scope": dim, "name": name, "period": period, "limit_usd": limit, "used_usd": round(used, 6),
                        "share": used / limit if limit else 1.0, "runs_out_at": runs_out, "resets_at": end})
    return out


# ---- raw rows ------------------------------------------------------------------------------------
REQUEST_COLUMNS = ("request_id", "ts", "endpoint", "key", "grp", "model", "served_model", "upstream", "status",
                   "error", "outcome", "latency_ms", "upstream_ms", "overhead_ms", "attempts", "input_tokens",
                   "cached_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "prompt_name", "prompt_version",
                   "experiment", "variant", "cache", "verdicts", "stream", "usage_source")


@dataclass(frozen=True, slots=True)
class RequestFilter:
    since: float
    until: float
    key: str | None = None
    model: str | None = None
    upstream: str | None = None
    status: str | None = None  # 2xx | 4xx | 5xx | an exact status
    check: str | None = None
    action: str | None = None
    prompt: str | None = None
    variant: str | None = None
    request_id: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        parts, args = ["ts >= ?", "ts < ?"], [self.since, self.until]
        for column, value in (("key", self.key), ("model", self.model), ("upstream", self.upstream),
                              ("prompt_name", self.prompt), ("variant", self.variant), ("request_id", self.request_id)):
            if value:
                parts.append(f"{column} = ?")
                args.append(value)
        if self.status:
            if self.status.endswith("xx"):
                low = int(self.status[0]) * 100
                parts.append("status >= ? AND status < ?")
                args += [low, low + 100]
            else:
                parts.append("status = ?")
                args.append(int(self.status))
        if self.check or self.action:
            # verdicts is compact JSON: [["type","name","action",score,"status",[labels]], ...]
            needle = ",".join(json.dumps(x) for x in (self.check, self.action) if x)
            if self.check and not self.action:
                needle = f",{json.dumps(self.check)},"
            parts.append("verdicts LIKE ? ESCAPE '\\'")
            args.append("%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        return " AND ".join(parts), args


def requests_page(reader: Any, f: RequestFilter, page: int, size: int) -> tuple[list[dict[str, Any]], bool]:
    """Newest first; returns (rows, whether a next page exists)."""
    cond, args = f.where()
    rows = reader.query(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE {cond} ORDER BY ts DESC "
                        f"LIMIT {int(size) + 1} OFFSET {int((page - 1) * size)}", args)
    out = [_request(r) for r in rows[:size]]
    return out, len(rows) > size


def one_request(reader: Any, request_id: str) -> dict[str, Any] | None:
    rows = reader.query(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id = ?", (request_id,))
    return _request(rows[0]) if rows else None


def _request(row: tuple) -> dict[str, Any]:
    r = dict(zip(REQUEST_COLUMNS, row))
    try:
        raw = json.loads(r["verdicts"]) if r["verdicts"] else []
    except ValueError:
        raw = []
    r["checks"] = [{"type": v[0], "name": v[1], "action": v[2], "score": v[3], "status": v[4] if len(v) > 4 else "ok",
                    "labels": v[5] if len(v) > 5 and isinstance(v[5], list) else []} for v in raw if len(v) >= 4]
    return r


# ---- guardrails ----------------------------------------------------------------------------------
ACTIONS = ("allow", "flag", "redact", "block")


def guardrails(reader: Any, w: Window) -> dict[str, Any]:
    b, b_args = w.bucket_sql()
    rows = reader.query(f"SELECT {b}, type, name, action, status, label, SUM(n) FROM checks_hourly WHERE hour >= ? "
                        "AND hour < ? GROUP BY 1, type, name, action, status, label", (*b_args, w.first_hour, w.end_hour))
    checks: dict[tuple[str, str], dict[str, Any]] = {}
    for start, ctype, name, action, status, label, n in rows:  # grouped by chart bucket (Window.bucket_sql)
        c = checks.setdefault((ctype, name), {"type": ctype, "name": name, "runs": 0, "timeout": 0, "error": 0,
                                              **{a: 0 for a in ACTIONS}, "labels": defaultdict(int),
                                              "series": {b: dict.fromkeys(ACTIONS, 0) for b in w.buckets()}})
        if label:
            c["labels"][label] += n
            continue
        c["runs"] += n
        c[action] = c.get(action, 0) + n
        if status in ("timeout", "error"):
            c[status] += n
        c["series"][start][action] = c["series"][start].get(action, 0) + n
    out = []
    for c in sorted(checks.values(), key=lambda c: (c["type"], c["name"])):
        c["labels"] = sorted(c["labels"].items(), key=lambda kv: (-kv[1], kv[0]))
        c["series"] = [{"t": b * 3600, **v} for b, v in sorted(c["series"].items())]
        out.append(c)
    return {"checks": out, "totals": {a: sum(c[a] for c in out) for a in (*ACTIONS, "runs", "timeout", "error")}}


def window_for(since: float, until: float, bucket: str | None) -> Window:
    first, end = math.floor(since / 3600), math.ceil(until / 3600)
    hours = 24 if (bucket or ("day" if end - first > 72 else "hour")) == "day" else 1
    first -= first % hours if hours == 24 else 0
    end = first + math.ceil((end - first) / hours) * hours
    return Window(first, end, hours)
