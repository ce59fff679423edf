"""The console's Tabular models pages: predictions and labels over time, performance over time, drift
per feature (the same report as GET /v1/tabular/{model}/drift) with reference vs current histograms,
the ADWIN / Page-Hinkley alarms, and the drift webhook deliveries kept in the prediction log."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
from aiohttp import web

from gateway.console import params
from gateway.console.render import page
from gateway.errors import GatewayError
from gateway.keys import HOLDER
from gateway.tabular import service as tabular

WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def _store(request: web.Request):
    store = request.config_dict.get(tabular.STORE)
    if store is None:
        raise GatewayError("This gateway keeps no prediction log (it runs without a state directory).", status=409,
                           type="invalid_request_error")
    return store


async def tabular_list(request: web.Request) -> web.Response:
    models = request.config_dict[HOLDER].current.tabular
    store = request.config_dict.get(tabular.STORE)
    counts: dict[str, tuple[int, int]] = {}
    if store is not None and models:
        rows = await asyncio.to_thread(store.backend.query, "SELECT model, COUNT(*), COUNT(label) FROM predictions "
                                       "GROUP BY model", ())
        counts = {m: (n, lab) for m, n, lab in rows}
    items = [{"name": name, "task": m.cfg.task, "features": list(m.cfg.features), "reference": m.profile is not None,
              "predictions": counts.get(name, (0, 0))[0], "labels": counts.get(name, (0, 0))[1]}
             for name, m in sorted(models.items())]
    return page(request, "tabular.html", nav="tabular", models=items)


def _histograms(model: tabular.TabularModel, columns: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Reference vs current share per bin (numeric: the profile's equal-width bins; categories: each
    value), from tabular.window_columns of the window."""
    if model.profile is None:
        return {}
    from gateway.stats.drift import hist_props  # scipy: imported on the first drift page, not at start-up

    out = {}
    for name, ref in model.profile.columns.items():
        if name not in columns:
            continue
        values = columns[name]
        if ref.kind == "numeric":
            if not ref.hist_edges:
                continue
            edges = np.asarray(ref.hist_edges)
            cur_p = hist_props(values[~np.isnan(values)], edges)
            bins = [{"label": f"{edges[i]:.4g}-{edges[i + 1]:.4g}", "reference": float(ref.hist_props[i]),
                     "current": float(cur_p[i])} for i in range(len(edges) - 1)]
        else:
            total = max(sum(ref.counts.values()), 1)
            present = values[values != ""]
            uniq, counts = np.unique(present.astype(str), return_counts=True) if len(present) else ([], [])
            cur_counts = {str(k): int(c) for k, c in zip(uniq, counts)}
            n = max(sum(cur_counts.values()), 1)
            keys = sorted(set(ref.counts) | set(cur_counts))
            bins = [{"label": k, "reference": ref.counts.get(k, 0) / total, "current": cur_counts.get(k, 0) / n}
                    for k in keys]
        top = max((max(b["reference"], b["current"]) for b in bins), default=0) or 1
        out[name] = {"kind": ref.kind, "bins": bins, "top": top}
    return out


def _over_time(model: tabular.TabularModel, rows: list[tuple], since: float, until: float,
               bucket_s: int) -> list[dict[str, Any]]:
    """Per bucket of the whole window (empty ones too, so the time axis is the window's): predictions,
    labels, mean prediction, and accuracy (classification) or MAE (regression)."""
    def empty() -> dict[str, float]:
        return {"predictions": 0, "labels": 0, "pred_sum": 0.0, "score_sum": 0.0, "pred_n": 0}

    first = int(since // bucket_s) * bucket_s
    acc = {b: empty() for b in range(first, int(until) + 1, bucket_s)}
    classification = model.cfg.task == "classification"
    for ts, _, pred, label in rows:  # a row written after `until` (read a moment later) gets its own bucket
        a = acc.setdefault(int(ts // bucket_s) * bucket_s, empty())
        a["predictions"] += 1
        if pred is not None:
            a["pred_sum"] += pred
            a["pred_n"] += 1
        if pred is not None and label is not None:
            a["labels"] += 1
            a["score_sum"] += (float((pred >= 0.5) == (label >= 0.5)) if classification else abs(pred - label))
    out = []
    for b, a in sorted(acc.items()):
        out.append({"t": b, "predictions": a["predictions"], "labels": a["labels"],
                    "mean_prediction": a["pred_sum"] / a["pred_n"] if a["pred_n"] else None,
                    ("accuracy" if classification else "mae"): a["score_sum"] / a["labels"] if a["labels"] else None})
    return out


async def tabular_detail(request: web.Request) -> web.Response:
    name = params.prompt_name(request.match_info["name"], "model")
    model = request.config_dict[HOLDER].current.tabular.get(name)
    if model is None:
        raise GatewayError(f"No tabular model named {name!r} in gateway.yaml.", status=404, type="invalid_request_error")
    window = params.choice(request.query, "window", tuple(WINDOWS)) or "24h"
    window_s = WINDOWS[window]
    store = _store(request)

    now = time.time()

    def build():
        rows = store.window(model.name, now - window_s)  # read and parsed once: the report and the pictures
        features = tabular.window_columns(model, rows)
        return (rows, features, tabular.compute_drift(store, model, window_s, rows, features),
                store.alerts(model.name))

    rows, features, report, alerts = await asyncio.to_thread(build)
    bucket_s = 3600 if window_s <= 2 * 86400 else 86400
    series = _over_time(model, rows, now - window_s, now, bucket_s)
    columns = {c["column"]: c for c in (report.get("data_drift") or {}).get("columns", [])}
    return page(request, "tabular_model.html", nav="tabular", name=name, model=model, window=window,
                windows=list(WINDOWS), report=report, series=series, histograms=_histograms(model, features),
                columns=columns, alerts=alerts, metric="accuracy" if model.cfg.task == "classification" else "mae",
                finite=lambda x: isinstance(x, (int, float)) and math.isfinite(x))
