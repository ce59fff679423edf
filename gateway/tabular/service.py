"""Tabular models behind the gateway: predict (schema-checked, logged), feedback (labels by
prediction id), drift (data, prediction and performance drift of a window of the log), and the
scheduled drift check that POSTs alerts to a webhook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest
from gateway.keys import HOLDER, METER
from gateway.tabular.config import TabularModelConfig, validate_rows
from gateway.tabular.store import LabelConflict, PredictionStore  # noqa: F401 (PredictionStore: app wiring)
from gateway.upstreams.sanitize import client_message

log = logging.getLogger("gateway.tabular")
STORE: web.AppKey[PredictionStore | None] = web.AppKey("tabular_store", object)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("tabular_http", aiohttp.ClientSession)
# Set when state is shared (gateway/state/redis.py RedisCoordinator): scheduled work runs once.
COORDINATOR: web.AppKey[Any] = web.AppKey("coordinator", object)
_ALERT_TASKS: set[asyncio.Task] = set()  # keeps running alert deliveries referenced


@dataclass
class TabularModel:
    name: str
    cfg: TabularModelConfig
    profile: Any  # gateway.stats.drift.Profile | None (scipy is imported only when drift is computed)


def _model(request: web.Request) -> TabularModel:
    rt = request.app[HOLDER].current
    principal = rt.keys.authenticate(request.headers.get("Authorization"))
    name = request.match_info["model"]
    model = rt.tabular.get(name)
    if model is None:
        raise GatewayError(f"No tabular model {name!r}; declared: {', '.join(sorted(rt.tabular)) or '(none)'}",
                           status=404, type="invalid_request_error", code="model_not_found")
    principal.check_model(name)
    return model


def _store(request: web.Request) -> PredictionStore:
    store = request.app[STORE]
    if store is None:
        raise GatewayError("Tabular logging is off (no state directory): feedback and drift need it.",
                           status=503, type="server_error", code="tabular_log_unavailable")
    return store


async def _json(request: web.Request) -> dict[str, Any]:
    from gateway.proxy import read_body
    from gateway.validation import parse_json

    return parse_json(await read_body(request, request.app[HOLDER].current.settings))


# ---- POST /v1/tabular/{model}/predict --------------------------------------------------------------
async def predict(request: web.Request) -> web.Response:
    model = _model(request)
    body = await _json(request)
    rows, problems = validate_rows(model.cfg, body.get("rows") if isinstance(body, dict) else None)
    if problems:
        raise InvalidRequest("Rows do not match the model's feature schema: " + "; ".join(problems), param="rows")
    pool = request.app[HTTP]
    t0 = time.perf_counter()
    try:
        async with pool.post(str(model.cfg.url), json={"rows": rows},
                             timeout=aiohttp.ClientTimeout(total=model.cfg.timeout_s)) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise GatewayError(f"Model server answered HTTP {resp.status}: "
                                   f"{client_message(text, upstream=model.name)}", status=502,
                                   type="upstream_error", code="model_server_error")
            data = json.loads(text)
    except aiohttp.ClientConnectorError:
        raise GatewayError(f"Model server {model.name!r} is unreachable (nothing accepts connections at its url)",
                           status=502, type="upstream_error", code="model_server_unreachable") from None
    except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as e:
        raise GatewayError(f"Model server {model.name!r} failed or answered garbage ({type(e).__name__})",
                           status=502, type="upstream_error", code="model_server_error") from None
    preds = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(preds, list) or len(preds) != len(rows):
        raise GatewayError("Model server must answer {\"predictions\": [...]} with one prediction per row",
                           status=502, type="upstream_error", code="model_server_error")
    now = time.time()
    ids = ["pred-" + os.urandom(10).hex() for _ in rows]
    store = request.app[STORE]
    if store is not None:
        store.record([(i, model.name, now, r, p) for i, r, p in zip(ids, rows, preds)])
    return web.json_response({
        "model": model.name,
        "predictions": [{"id": i, "prediction": p} for i, p in zip(ids, preds)],
        "gateway": {"model_ms": round((time.perf_counter() - t0) * 1000, 3), "logged": store is not None},
    })


# ---- POST /v1/tabular/{model}/feedback -------------------------------------------------------------
async def feedback(request: web.Request) -> web.Response:
    model = _model(request)
    store = _store(request)
    body = await _json(request)
    items = body.get("labels") if isinstance(body, dict) else None
    if isinstance(body, dict) and "id" in body:
        items = [body]
    if not isinstance(items, list) or not items:
        raise InvalidRequest('Send {"id": "pred-...", "label": 1} or {"labels": [{"id": ..., "label": ...}, ...]}.')
    results = []
    for i, item in enumerate(items):
        pid, label = (item.get("id"), item.get("label")) if isinstance(item, dict) else (None, None)
        if not isinstance(pid, str) or isinstance(label, bool) or not isinstance(label, (int, float)):
            raise InvalidRequest(f"labels[{i}]: needs a string `id` and a numeric `label`", param=f"labels[{i}]")
        on_disk = await asyncio.to_thread(store.lookup_label, pid)
        try:
            results.append({"id": pid, "status": store.label(pid, float(label), on_disk)})
        except KeyError:
            results.append({"id": pid, "status": "unknown_prediction"})
        except LabelConflict as e:
            results.append({"id": pid, "status": "conflict", "message": str(e)})
    status = 200 if all(r["status"] in ("recorded", "unchanged") for r in results) else (
        404 if all(r["status"] == "unknown_prediction" for r in results) else
        409 if len(results) == 1 and results[0]["status"] == "conflict" else 207)
    return web.json_response({"model": model.name, "results": results}, status=status)


# ---- GET /v1/tabular/{model}/drift -----------------------------------------------------------------
async def drift_report(request: web.Request) -> web.Response:
    model = _model(request)
    store = _store(request)
    window = request.query.get("window")
    try:
        window_s = _seconds(window) if window else model.cfg.drift.window_s
    except ValueError as e:
        raise InvalidRequest(str(e), param="window") from None
    report = await asyncio.to_thread(compute_drift, store, model, window_s)
    return web.Response(body=orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY),
                        content_type="application/json")


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"window {text!r}: give seconds or a number with s/m/h/d, e.g. 30m or 24h") from None
    if value <= 0:
        raise ValueError("window must be positive")
    return value


def window_columns(model: TabularModel, rows: list[tuple]) -> dict[str, np.ndarray]:
    """The window's features as one array per configured feature: numbers as float (NaN: missing),
    categories as strings ('' : missing). Each row's JSON is parsed once."""
    feats = [orjson.loads(r[1]) for r in rows]
    columns: dict[str, np.ndarray] = {}
    for name, spec in model.cfg.features.items():
        vals = [f.get(name) for f in feats]
        if spec.type in ("number", "integer"):
            columns[name] = np.array([np.nan if v is None else v for v in vals], dtype=float)
        else:
            columns[name] = np.array(["" if v is None else str(v) for v in vals], dtype=object)
    return columns


RAW_LIMIT = 100_000  # a window with more predictions is drift-checked from the summaries (tabular/rollups.py)
LABEL_LIMIT = 100_000  # performance uses at most the latest this many labelled predictions of a window


def compute_drift(store: PredictionStore, model: TabularModel, window_s: float,
                  rows: list[tuple] | None = None, columns: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The drift report of the last `window_s` seconds of `model`'s prediction log (blocking). `rows`
    (that window as `store.window` returns it) and `columns` (window_columns of them): when the caller
    has them already (the console). A window of more than RAW_LIMIT predictions is read from the
    log's drift summaries instead of its rows."""
    from gateway.stats import drift  # scipy: ~1 s to import, paid on the first drift report, not at start-up

    cfg = model.cfg
    now = time.time()
    if rows is None and model.profile is not None and \
            store.count_upto(model.name, now - window_s, RAW_LIMIT + 1) > RAW_LIMIT:
        return _drift_from_summaries(store, model, window_s, now)
    if rows is None:
        rows = store.window(model.name, now - window_s)
    out: dict[str, Any] = {"model": model.name, "window": {"seconds": window_s, "rows": len(rows),
                                                            "labelled": sum(r[3] is not None for r in rows)},
                           "drift": False}
    if len(rows) < cfg.drift.min_rows:
        out["status"] = "insufficient_data"
        out["message"] = f"{len(rows)} predictions in the window; need at least {cfg.drift.min_rows} (drift.min_rows)"
        return out
    out["status"] = "ok"
    columns = columns if columns is not None else window_columns(model, rows)
    preds = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
    if model.profile is None:
        out["data_drift"] = {"status": "no_reference",
                             "message": "no reference profile: set `reference:` to a `gateway drift fit` profile"}
    else:
        report = drift.compare(_feature_profile(model), columns, dataset_threshold=cfg.drift.dataset_threshold)
        out["data_drift"] = report.to_json()
        out["drift"] |= report.dataset_drift
        if "prediction" in model.profile.columns and not np.isnan(preds).all():
            pd = drift.compare_column("prediction", model.profile.columns["prediction"], preds)
            out["prediction_drift"] = asdict(drift.settle_alone(pd))
    out["performance"] = _performance(store, model, [(r[2], r[3]) for r in rows], now - window_s)
    out["drift"] |= bool(out["performance"].get("degraded"))
    return out


def _feature_profile(model: TabularModel) -> Any:
    """The model's reference profile with only its features (not its prediction or label columns)."""
    return replace(model.profile, columns={k: v for k, v in model.profile.columns.items() if k in model.cfg.features})


def _drift_from_summaries(store: PredictionStore, model: TabularModel, window_s: float, now: float) -> dict[str, Any]:
    """compute_drift's report from the drift summaries: the same form, the window's start aligned down
    to the hour (said in `window`), KS and Wasserstein from the summaries' KLL sketches."""
    from gateway.stats import drift, drift_stream
    from gateway.tabular.rollups import Rollups, RollupsPending

    cfg, started = model.cfg, time.perf_counter()
    window: dict[str, Any] = {"seconds": window_s, "requested_since": now - window_s}
    try:
        partials, n, since = Rollups(store).window(model, now - window_s, now)
    except RollupsPending as e:
        return {"model": model.name, "window": window, "drift": False, "status": "summaries_pending",
                "message": str(e)}
    labelled = store.labelled_since(model.name, since, LABEL_LIMIT)
    window.update(since=since, aligned_to_hour=since < now - window_s, rows=n, labelled=len(labelled),
                  labelled_capped=len(labelled) >= LABEL_LIMIT)
    out: dict[str, Any] = {"model": model.name, "window": window, "drift": False, "status": "ok"}
    features = _feature_profile(model)
    results = drift_stream.results(features.columns, partials, {}, {})
    report = drift.assemble(features, results, drift.schema_problems(features, list(cfg.features)), n,
                            dataset_threshold=cfg.drift.dataset_threshold, correction="holm",
                            engine={"name": "summaries", "rows_read": n, "since": since,
                                    "wall_s": round(time.perf_counter() - started, 3)})
    out["data_drift"] = report.to_json()
    out["drift"] |= report.dataset_drift
    pred_ref = model.profile.columns.get("prediction")
    if pred_ref is not None and pred_ref.kind == "numeric" and partials["prediction"].n:
        pd = drift.numeric_result("prediction", pred_ref, partials["prediction"].summary(pred_ref), drift.ColumnRule())
        out["prediction_drift"] = asdict(drift.settle_alone(pd))
    out["performance"] = _performance(store, model, labelled, since)
    out["drift"] |= bool(out["performance"].get("degraded"))
    return out


def _performance(store: PredictionStore, model: TabularModel, pairs: list[tuple], since: float) -> dict[str, Any]:
    """Window vs. everything labelled before it, plus a streaming detector over the window's errors.
    `pairs`: (prediction, label) of the window, oldest first (label None: not labelled yet)."""
    from gateway.stats import concept

    cur = [(p, y) for p, y in pairs if p is not None and y is not None]
    if len(cur) < 30:
        return {"status": "insufficient_labels", "labelled": len(cur), "message": "need 30 labelled predictions"}
    ref = [(p, y) for p, y in store.labelled_before(model.name, since) if p is not None]
    cp, cy = np.array([c[0] for c in cur]), np.array([c[1] for c in cur])
    out: dict[str, Any] = {"status": "ok", "labelled": len(cur), "reference_labelled": len(ref)}
    classification = model.cfg.task == "classification"
    if len(ref) >= 30:
        rp, ry = np.array([r[0] for r in ref]), np.array([r[1] for r in ref])
        changes = (concept.classification_change(ry, rp, cy, cp) if classification
                   else concept.regression_change(ry, rp, cy, cp))
        out["changes"] = [asdict(c) for c in changes]
        out["degraded"] = any(c.worse for c in changes)
    else:
        out["changes_note"] = "fewer than 30 labelled predictions before the window: no reference period yet"
    detector = concept.ADWIN() if classification else concept.PageHinkley()
    errors = (((cp >= 0.5).astype(float) != cy).astype(float) if classification else np.abs(cp - cy))
    fired = [i for i, e in enumerate(errors) if detector.update(float(e)) == "drift"]
    out["detector"] = {"name": type(detector).__name__, "alarms": len(fired), "first_at": fired[0] if fired else None}
    return out


# ---- scheduled drift check with webhook alerts ---------------------------------------------------------
async def monitor(app: web.Application) -> None:
    """Scheduled drift checks. With shared state (several workers or replicas) only the lease holder
    checks, and each alert is claimed once per realert period across all of them."""
    last_alert: dict[str, float] = {}
    last_check: dict[str, float] = {}
    coordinator = app.get(COORDINATOR)
    while True:
        await asyncio.sleep(0.5)
        store = app[STORE]
        if store is None:
            continue
        models = [m for m in app[HOLDER].current.tabular.values() if m.cfg.drift.check_every_s]
        if models and coordinator is not None and not await coordinator.leader("drift-monitor"):
            continue
        for model in models:
            every = model.cfg.drift.check_every_s
            now = time.time()
            if not every or now - last_check.get(model.name, 0) < every:
                continue
            last_check[model.name] = now
            try:
                report = await asyncio.to_thread(compute_drift, store, model, model.cfg.drift.window_s)
            except Exception:  # a failing check is logged, never stops the monitor or requests
                log.exception("scheduled drift check of %s failed", model.name)
                continue
            if report.get("drift") and model.cfg.drift.webhook and (
                    now - last_alert.get(model.name, 0) >= model.cfg.drift.realert_after_s):
                last_alert[model.name] = now
                if coordinator is not None and not await coordinator.once(f"drift-alert:{model.name}",
                                                                         model.cfg.drift.realert_after_s):
                    continue  # another replica alerted for this period already
                task = asyncio.create_task(_alert(app, str(model.cfg.drift.webhook), model.name, report))
                _ALERT_TASKS.add(task)
                task.add_done_callback(_ALERT_TASKS.discard)


async def _alert(app: web.Application, url: str, model: str, report: dict[str, Any]) -> None:
    data_drift = bool((report.get("data_drift") or {}).get("dataset_drift"))
    degraded = bool(report["performance"].get("degraded"))
    payload = {"type": "tabular.drift", "model": model, "at": time.time(), "data_drift": data_drift,
               "performance_degraded": degraded, "report": report}
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    status: int | None = None
    error: str | None = None
    attempts = 1

    def record(**outcome: Any) -> None:  # in the prediction log: the console lists it on every replica
        app[STORE].record_alert(model, attempts=attempts, data_drift=data_drift, performance_degraded=degraded,
                                **outcome)

    for attempts in range(1, 5):
        try:
            async with app[HTTP].post(url, data=body, headers={"Content-Type": "application/json"},
                                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
                status = resp.status
                if resp.status < 300:
                    record(delivered=True, http_status=status, error=None)
                    return
                error = f"HTTP {resp.status}"
                log.warning("drift webhook for %s answered HTTP %d (attempt %d)", model, resp.status, attempts)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            status, error = None, type(e).__name__
            log.warning("drift webhook for %s failed: %s (attempt %d)", model, error, attempts)
        if attempts < 4:
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempts - 1)))
    record(delivered=False, http_status=status, error=error)
    log.error("drift alert for %s could not be delivered to the webhook", model)


SUMMARISE_EVERY_S = 60.0


async def summariser(app: web.Application) -> None:
    """Keeps the prediction log's drift summaries current (tabular/rollups.py) and applies keep_days.
    Its writes are idempotent; with shared state only the lease holder runs it."""
    from gateway.tabular.rollups import Rollups

    coordinator = app.get(COORDINATOR)
    meter = app.get(METER)
    metrics = meter.metrics if meter is not None else None
    while True:
        await asyncio.sleep(SUMMARISE_EVERY_S)
        store = app[STORE]
        models = [m for m in app[HOLDER].current.tabular.values() if m.profile is not None or m.cfg.keep_days]
        if store is None or not models:
            continue
        if coordinator is not None and not await coordinator.leader("drift-summaries"):
            continue
        rollups = Rollups(store)
        for model in models:
            try:
                if model.cfg.keep_days:
                    deleted = await asyncio.to_thread(rollups.retain, model, model.cfg.keep_days)
                    if deleted:
                        log.info("tabular %s: %d predictions older than %g days deleted (keep_days)", model.name,
                                 deleted, model.cfg.keep_days)
                        if metrics is not None:
                            metrics.predictions_deleted.labels(model.name).inc(deleted)
                horizon = time.time() - model.cfg.keep_days * 86400 if model.cfg.keep_days else None
                if model.profile is not None:
                    written = await asyncio.to_thread(rollups.build, model, None, horizon)
                    if written and metrics is not None:
                        metrics.drift_summaries.labels(model.name).inc(written)
            except Exception:  # a failing pass is logged, counted and retried; requests never wait on it
                log.exception("drift summaries of %s failed", model.name)
                if metrics is not None:
                    metrics.drift_summary_errors.labels(model.name).inc()


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """The prediction log's writer thread, the HTTP client for model servers and webhooks, the monitor
    and the drift summariser."""
    app[HTTP] = aiohttp.ClientSession()
    store = app[STORE]
    if store is not None:
        await asyncio.to_thread(store.start)
    tasks = [asyncio.create_task(monitor(app)), asyncio.create_task(summariser(app))]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[HTTP].close()
    if store is not None:
        await asyncio.to_thread(store.close)
