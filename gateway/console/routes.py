"""The console's pages at /ui: overview, requests, guardrails, prompts. A sub-application of the gateway
(same process and port) with its own middleware for sessions, CSRF and HTML error pages."""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.console import auth, eval_pages, experiment_pages, params, prompt_pages, queries, tabular_pages
from gateway.console.routes_common import read, reader
from gateway.console.render import page
from gateway.console.session import Sessions, load_secret
from gateway.console.settings import ConsoleSettings
from gateway.errors import GatewayError
from gateway.keys import HOLDER
from gateway.metering.limits import day_start, month_start

log = logging.getLogger("gateway.console")
STATIC = Path(__file__).with_name("static")


def _window(request: web.Request, default_since: str = "24h") -> tuple[float, float, queries.Window]:
    since, until = params.time_range(request.query, default_since)
    bucket = params.choice(request.query, "bucket", ("hour", "day"))
    return since, until, queries.window_for(since, until, bucket)


# ---- overview ------------------------------------------------------------------------------------
def _scopes(request: web.Request) -> list[tuple[str, str, Any]]:
    """Every key and group budget of the current configuration, once each."""
    keys = request.config_dict[HOLDER].current.keys
    principals = list(keys.by_digest().values()) + ([keys.open_principal] if keys.open_principal else [])
    seen: dict[str, tuple[str, str, Any]] = {}
    for p in principals:
        for s in p.scopes:
            dim, _, name = s.name.partition(":")
            if s.limits.usd_per_day is not None or s.limits.usd_per_month is not None:
                seen.setdefault(s.name, (dim, name, s.limits))
    return sorted(seen.values(), key=lambda s: (s[0], s[1]))


def _overview_data(request: web.Request) -> tuple[dict[str, Any], Any]:
    q = request.query
    since, until, w = _window(request)
    dim = params.choice(q, "dim", queries.BREAKDOWNS)
    value = params.name(q, "value")
    if (dim is None) != (value is None):
        raise params.BadParam("dim" if dim is None else "value", "give `dim` and `value` together (e.g. dim=key&value=team-a)")
    now = time.time()
    m_start = month_start(now)
    first = dt.datetime.fromtimestamp(m_start, dt.UTC)
    m_end = m_start + calendar.monthrange(first.year, first.month)[1] * 86400

    def load(led):
        return {"overview": queries.overview(led, w, dim, value),
                "breakdowns": {d: queries.breakdown(led, w, d) for d in queries.BREAKDOWNS},
                "budgets": queries.budgets(led, _scopes(request), now, day_start(now), m_start, m_end)}

    ctx = {"since": since, "until": until, "window": w, "dim": dim, "value": value}
    return ctx, load


async def overview(request: web.Request) -> web.Response:
    ctx, load = _overview_data(request)
    data = await read(load, reader(request))
    return page(request, "overview.html", nav="overview", **ctx, **data)


async def api_overview(request: web.Request) -> web.Response:
    ctx, load = _overview_data(request)
    data = await read(load, reader(request))
    w = ctx["window"]
    return web.json_response({"first_hour": w.first_hour, "end_hour": w.end_hour, "bucket_hours": w.bucket_hours,
                              "dim": ctx["dim"], "value": ctx["value"], **data})


# ---- requests ------------------------------------------------------------------------------------
def _request_filter(request: web.Request) -> tuple[queries.RequestFilter, int, int]:
    q = request.query
    since, until = params.time_range(q, "7d")
    f = queries.RequestFilter(
        since, until, key=params.name(q, "key"), model=params.name(q, "model"), upstream=params.name(q, "upstream"),
        status=params.status(q), check=params.name(q, "check"),
        action=params.choice(q, "action", queries.ACTIONS), prompt=params.name(q, "prompt"),
        variant=params.name(q, "variant"), request_id=params.name(q, "request_id"))
    size = params.integer(q, "size", 50, 1, params.MAX_PAGE_SIZE)
    page_no = params.integer(q, "page", 1, 1, 1_000_000)
    if (page_no - 1) * size > params.MAX_OFFSET_ROWS:
        raise params.BadParam("page", f"only the newest {params.MAX_OFFSET_ROWS:,} matching rows can be paged "
                                      "through: narrow the time range or add a filter")
    return f, page_no, size


async def requests_list(request: web.Request) -> web.Response:
    f, page_no, size = _request_filter(request)
    rows, more = await read(queries.requests_page, reader(request), f, page_no, size)
    return page(request, "requests.html", nav="requests", rows=rows, more=more, page_no=page_no, size=size, f=f)


async def api_requests(request: web.Request) -> web.Response:
    f, page_no, size = _request_filter(request)
    rows, more = await read(queries.requests_page, reader(request), f, page_no, size)
    return web.json_response({"page": page_no, "size": size, "more": more, "data": rows})


async def request_detail(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    if not params._NAME.match(rid):
        raise params.BadParam("request id", "not a request id")
    row = await read(queries.one_request, reader(request), rid)
    if row is None:
        raise GatewayError(f"No request {rid!r} in the ledger.", status=404, type="invalid_request_error")
    return page(request, "request.html", nav="requests", r=row)


# ---- guardrails ----------------------------------------------------------------------------------
async def guardrails(request: web.Request) -> web.Response:
    since, until, w = _window(request, "7d")
    data = await read(queries.guardrails, reader(request), w)
    return page(request, "guardrails.html", nav="guardrails", since=since, until=until, window=w, **data)


async def api_guardrails(request: web.Request) -> web.Response:
    _, _, w = _window(request, "7d")
    data = await read(queries.guardrails, reader(request), w)
    return web.json_response(data)


# ---- the sub-application ---------------------------------------------------------------------------
async def home(request: web.Request) -> web.StreamResponse:
    return web.Response(status=303, headers={"Location": "/ui/"})


def build_console(settings: ConsoleSettings, state_dir: Path | None) -> web.Application:
    """Raises session.SecretError (a start-up error) when the configured secret is unusable."""
    sub = web.Application(middlewares=[auth.console_middleware])
    sub[eval_pages.STATE_DIR] = state_dir
    sub[auth.SESSIONS] = Sessions(load_secret(settings.secret_env, state_dir), settings.session_hours * 3600)
    r = sub.router
    r.add_get("/", overview)
    r.add_get("/login", auth.login_get)
    r.add_post("/login", auth.login_post)
    r.add_post("/logout", auth.logout)
    r.add_get("/requests", requests_list)
    r.add_get("/requests/{id}", request_detail)
    r.add_get("/guardrails", guardrails)
    r.add_get("/prompts", prompt_pages.prompts_list)
    r.add_get("/prompts/{name}", prompt_pages.prompt_detail)
    r.add_get("/prompts/{name}/diff", prompt_pages.prompt_diff)
    r.add_post("/prompts/{name}/promote", prompt_pages.promote)
    r.add_post("/prompts/{name}/rollback", prompt_pages.rollback)
    r.add_get("/experiments", experiment_pages.experiments_list)
    r.add_get("/experiments/{name}", experiment_pages.experiment_detail)
    r.add_get("/tabular", tabular_pages.tabular_list)
    r.add_get("/tabular/{name}", tabular_pages.tabular_detail)
    r.add_get("/evals", eval_pages.evals_list)
    r.add_get("/evals/compare", eval_pages.evals_compare)
    r.add_get("/api/overview", api_overview)
    r.add_get("/api/requests", api_requests)
    r.add_get("/api/guardrails", api_guardrails)
    r.add_get("/api/experiments/{name}", experiment_pages.api_experiment)
    r.add_static("/static/", STATIC, append_version=False)
    return sub
