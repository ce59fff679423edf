"""`POST /v1/feedback`: an outcome for an experiment, by request id or by unit id.

    {"request_id": "gw-...", "metric": "conversion", "value": 1}
    {"experiment": "support-prompt", "unit_id": "user-42", "metric": "rating", "value": 4}

Idempotent per (request, metric) - or per (experiment, unit, metric) - : a repeat is accepted and
ignored. The metric must be declared in the experiment; proportions take 0 or 1.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.experiments.assign import unit_hash
from gateway.keys import HOLDER, METER
from gateway.metering.ledger import LedgerUnavailable
from gateway.proxy import read_body
from gateway.runtime import Runtime
from gateway.validation import parse_json

_FIELDS = {"request_id", "experiment", "unit_id", "metric", "value"}


async def post_feedback(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    meter = request.app[METER]
    if meter.ledger is None or not rt.metering:
        raise GatewayError("Feedback is stored in the usage ledger, which is off on this gateway.", status=503,
                           code="ledger_unavailable")
    body = parse_json(await read_body(request, rt.settings))
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FIELDS))}.")
    metric, value = body.get("metric"), body.get("value")
    if not isinstance(metric, str) or not metric:
        raise InvalidRequest("`metric` is required (a metric declared in the experiment).", param="metric")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest("`value` must be a finite number.", param="value")

    if isinstance(body.get("request_id"), str):
        experiment, variant, uh = await _by_request(meter, body["request_id"])
        dedup = body["request_id"]
    elif isinstance(body.get("experiment"), str) and isinstance(body.get("unit_id"), str):
        experiment = body["experiment"]
        splitter = rt.experiments.get(experiment)
        if splitter is None:
            raise NotFound(f"Unknown experiment {experiment!r}; experiments: {', '.join(rt.experiments) or '(none)'}.",
                           code="experiment_not_found")
        uh = unit_hash(splitter.salt, body["unit_id"])
        variant = await _by_unit(meter, experiment, uh)
        dedup = f"unit:{experiment}:{uh}"
    else:
        raise InvalidRequest("Give `request_id`, or `experiment` and `unit_id`.")

    splitter = rt.experiments.get(experiment)
    if splitter is None:
        raise NotFound(f"Experiment {experiment!r} is no longer configured.", code="experiment_not_found")
    declared = splitter.exp.metrics
    if metric not in declared:
        raise InvalidRequest(f"Metric {metric!r} is not declared in experiment {experiment!r}; declared: "
                             f"{', '.join(declared) or '(none)'}.", param="metric")
    if declared[metric].type == "proportion" and value not in (0, 1):
        raise InvalidRequest(f"Metric {metric!r} is a proportion: `value` must be 0 or 1.", param="value")
    meter.ledger.record_feedback((dedup, metric, time.time(), experiment, variant, uh, float(value)))
    return web.Response(status=202, content_type="application/json", body=orjson.dumps(
        {"accepted": True, "experiment": experiment, "variant": variant, "metric": metric}))


async def _by_request(meter: Any, request_id: str) -> tuple[str, str, str]:
    found = meter.recent_assignments.get(request_id)
    if found is not None:
        return found.experiment, found.variant.name, found.unit_hash
    row = await _query_settled(meter.ledger,
                               "SELECT experiment, variant, unit_hash FROM requests WHERE request_id = ? "
                               "AND experiment IS NOT NULL", (request_id,))
    if row is None:
        raise NotFound(f"Unknown request id {request_id!r}, or that request took part in no experiment.",
                       code="request_not_found")
    return row


async def _by_unit(meter: Any, experiment: str, uh: str) -> str:
    found = meter.recent_assignments.get((experiment, uh))
    if found is not None:
        return found.variant.name
    row = await _query_settled(meter.ledger,
                               "SELECT variant FROM experiment_units WHERE experiment = ? AND unit_hash = ? "
                               "ORDER BY first_ts DESC LIMIT 1", (experiment, uh))
    if row is None:
        raise NotFound(f"Unit never took part in experiment {experiment!r}.", code="unit_not_found")
    return row[0]


async def _query_settled(ledger: Any, sql: str, params: tuple) -> Any:
    """A row another worker or replica served may still be in its writer's queue (up to one flush
    interval): not found at first, ask once more after that interval before answering 404."""
    row = await _query(ledger.reader, sql, params)
    if row is None:
        await asyncio.sleep(ledger.flush_interval_s * 1.5)
        row = await _query(ledger.reader, sql, params)
    return row


async def _query(reader: Any, sql: str, params: tuple) -> Any:
    try:
        rows = await asyncio.to_thread(reader.query, sql, params)
    except LedgerUnavailable as e:
        raise GatewayError(f"The usage ledger cannot be read right now ({e}); retry shortly.", status=503,
                           code="ledger_unavailable") from None
    return rows[0] if rows else None


async def list_experiments(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    now = datetime.datetime.now(datetime.UTC)
    data = [{"name": s.exp.name, "description": s.exp.description, "unit": s.exp.unit,
             "variants": [{"name": v.name, "weight": v.weight} for v in s.exp.variants],
             "metrics": list(s.exp.metrics), "active": s.active(now)} for s in rt.experiments.values()]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def experiment_report(request: web.Request) -> web.Response:
    from gateway.experiments.report import build_report

    rt: Runtime = request.app[HOLDER].current
    rt.keys.authenticate(request.headers.get("Authorization"))
    name = request.match_info["name"]
    splitter = rt.experiments.get(name)
    if splitter is None:
        raise NotFound(f"Unknown experiment {name!r}; experiments: {', '.join(rt.experiments) or '(none)'}.",
                       code="experiment_not_found")
    ledger = request.app[METER].ledger
    if ledger is None:
        raise GatewayError("Experiment reports read the usage ledger, which is off on this gateway.", status=503,
                           code="ledger_unavailable")
    try:
        report = await asyncio.to_thread(build_report, ledger.reader, splitter.exp)
    except LedgerUnavailable as e:
        raise GatewayError(f"The usage ledger cannot be read right now ({e}); retry shortly.", status=503,
                           code="ledger_unavailable") from None
    return web.Response(body=orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json")
