"""The console's Experiments pages: the report of `gateway ab report` (the same function), with each
metric's confidence sequence over time, the SRM status and the decision in words."""

from __future__ import annotations

import datetime as dt

import orjson
from aiohttp import web

from gateway.console import experiment_series, params
from gateway.console.render import page
from gateway.console.routes_common import read, reader
from gateway.errors import GatewayError
from gateway.experiments.report import build_report
from gateway.keys import HOLDER


async def experiments_list(request: web.Request) -> web.Response:
    rt = request.config_dict[HOLDER].current
    now = dt.datetime.now(dt.UTC)
    units = {}
    if rt.experiments:
        rows = await read(lambda r: r.query("SELECT experiment, variant, COUNT(*) FROM experiment_units GROUP BY 1, 2"),
                          reader(request))
        for e, v, n in rows:
            units.setdefault(e, {})[v] = n
    items = [{"name": s.exp.name, "description": s.exp.description, "active": s.active(now),
              "variants": [(v.name, v.weight, units.get(s.exp.name, {}).get(v.name, 0)) for v in s.exp.variants],
              "metrics": list(s.exp.metrics)} for s in rt.experiments.values()]
    return page(request, "experiments.html", nav="experiments", experiments=items)


async def _report(request: web.Request):
    name = params.prompt_name(request.match_info["name"], "experiment")
    splitter = request.config_dict[HOLDER].current.experiments.get(name)
    if splitter is None:
        raise GatewayError(f"No experiment named {name!r} in experiments.yaml.", status=404, type="invalid_request_error")
    bucket = params.choice(request.query, "bucket", ("hour", "day")) or "day"
    bucket_s = 86400 if bucket == "day" else 3600

    def build(r):
        return build_report(r, splitter.exp), experiment_series.series(r, splitter.exp, bucket_s)

    report, sequences = await read(build, reader(request))
    return report, sequences, bucket


async def experiment_detail(request: web.Request) -> web.Response:
    report, sequences, bucket = await _report(request)
    return page(request, "experiment.html", nav="experiments", r=report, sequences=sequences, bucket=bucket)


async def api_experiment(request: web.Request) -> web.Response:
    report, sequences, bucket = await _report(request)
    return web.Response(body=orjson.dumps({"report": report, "sequences": sequences, "bucket": bucket},
                                          option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json")
