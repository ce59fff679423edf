"""The console's pages at /ui: overview, requests, guardrails, prompts. A sub-application of the gateway
(same process and port) with its own middleware for sessions, CSRF and HTML error pages."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import difflib
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.console import auth, params, queries
from gateway.console.render import page
from gateway.console.session import USER, Sessions, load_secret
from gateway.console.settings import ConsoleSettings
from gateway.errors import GatewayError
from gateway.keys import HOLDER, METER
from gateway.metering.ledger import LedgerUnavailable
from gateway.metering.limits import day_start, month_start
from gateway.prompts import edits
from gateway.prompts.store import PromptStore

log = logging.getLogger("gateway.console")
STATIC = Path(__file__).with_name("static")


def _reader(request: web.Request):
    ledger = request.config_dict[METER].ledger
    if ledger is None:
        raise GatewayError("This gateway runs without a ledger (`--no-ledger` or metering off), so there is nothing "
                           "to show here.", status=409, type="invalid_request_error")
    return ledger.reader


async def _read(fn, *args):
    try:
        return await asyncio.to_thread(fn, *args)
    except LedgerUnavailable as e:
        raise GatewayError(f"The ledger cannot be read right now: {e}", status=503, type="service_unavailable") from None


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

    def read(reader):
        return {"overview": queries.overview(reader, w, dim, value),
                "breakdowns": {d: queries.breakdown(reader, w, d) for d in queries.BREAKDOWNS},
                "budgets": queries.budgets(reader, _scopes(request), now, day_start(now), m_start, m_end)}

    ctx = {"since": since, "until": until, "window": w, "dim": dim, "value": value}
    return ctx, read


async def overview(request: web.Request) -> web.Response:
    ctx, read = _overview_data(request)
    data = await _read(read, _reader(request))
    return page(request, "overview.html", nav="overview", **ctx, **data)


async def api_overview(request: web.Request) -> web.Response:
    ctx, read = _overview_data(request)
    data = await _read(read, _reader(request))
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
    rows, more = await _read(queries.requests_page, _reader(request), f, page_no, size)
    return page(request, "requests.html", nav="requests", rows=rows, more=more, page_no=page_no, size=size, f=f)


async def api_requests(request: web.Request) -> web.Response:
    f, page_no, size = _request_filter(request)
    rows, more = await _read(queries.requests_page, _reader(request), f, page_no, size)
    return web.json_response({"page": page_no, "size": size, "more": more, "data": rows})


async def request_detail(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    if not params._NAME.match(rid):
        raise params.BadParam("request id", "not a request id")
    row = await _read(queries.one_request, _reader(request), rid)
    if row is None:
        raise GatewayError(f"No request {rid!r} in the ledger.", status=404, type="invalid_request_error")
    return page(request, "request.html", nav="requests", r=row)


# ---- guardrails ----------------------------------------------------------------------------------
async def guardrails(request: web.Request) -> web.Response:
    since, until, w = _window(request, "7d")
    data = await _read(queries.guardrails, _reader(request), w)
    return page(request, "guardrails.html", nav="guardrails", since=since, until=until, window=w, **data)


async def api_guardrails(request: web.Request) -> web.Response:
    _, _, w = _window(request, "7d")
    data = await _read(queries.guardrails, _reader(request), w)
    return web.json_response(data)


# ---- prompts -------------------------------------------------------------------------------------
def _store(request: web.Request) -> PromptStore:
    root = request.config_dict[HOLDER].prompts_dir
    if root is None:
        raise GatewayError("This gateway runs without a prompts folder.", status=409, type="invalid_request_error")
    return PromptStore(root)


def _prompt(request: web.Request) -> tuple[str, dict]:
    name = params.prompt_name(request.match_info["name"])
    reg = request.config_dict[HOLDER].current.prompts
    if name not in reg.versions:
        raise GatewayError(f"No prompt named {name!r}.", status=404, type="invalid_request_error")
    return name, reg.versions[name]


async def prompts_list(request: web.Request) -> web.Response:
    reg = request.config_dict[HOLDER].current.prompts
    items = [{"name": n, "versions": list(vs), "labels": reg.labels.get(n, {}),
              "description": list(vs.values())[-1].spec.description if vs else ""}
             for n, vs in sorted(reg.versions.items())]
    return page(request, "prompts.html", nav="prompts", prompts=items)


async def prompt_detail(request: web.Request) -> web.Response:
    name, versions = _prompt(request)
    reg = request.config_dict[HOLDER].current.prompts
    history = await asyncio.to_thread(_store(request).read_history, name)
    return page(request, "prompt.html", nav="prompts", name=name, versions=versions, labels=reg.labels.get(name, {}),
                history=list(reversed(history)))


def side_by_side(a: list[str], b: list[str]) -> list[tuple[str, int | None, str, int | None, str]]:
    """Rows of (tag, left line no, left text, right line no, right text) for a two-column diff."""
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            li, rj = i1 + k, j1 + k
            rows.append((tag, li + 1 if li < i2 else None, a[li] if li < i2 else "",
                         rj + 1 if rj < j2 else None, b[rj] if rj < j2 else ""))
    return rows


async def prompt_diff(request: web.Request) -> web.Response:
    name, versions = _prompt(request)
    picked = []
    for side in ("a", "b"):
        v = params.integer(request.query, side, 0, 1, 1_000_000)
        if v not in versions:
            raise params.BadParam(side, f"{name} has versions {', '.join(map(str, versions))}")
        picked.append(versions[v])
    a, b = (c.path.read_text(encoding="utf-8") for c in picked)
    rows = side_by_side(a.splitlines(), b.splitlines())
    return page(request, "diff.html", nav="prompts", name=name, a=picked[0], b=picked[1], rows=rows,
                changed=sum(1 for r in rows if r[0] != "equal"))


async def _label_move(request: web.Request, action: str) -> web.StreamResponse:
    name, versions = _prompt(request)
    form = await request.post()
    label = form.get("label")
    if not isinstance(label, str) or not label:
        raise params.BadParam("label", "choose a label")
    if form.get("confirm") != "yes":
        raise params.BadParam("confirm", f"confirm the {action} (tick the box)")
    by = f"console:{request[USER].principal.name}"
    store = _store(request)
    try:
        if action == "promote":
            raw = form.get("version")
            if not isinstance(raw, str) or not raw.isdigit() or int(raw) not in versions:
                raise params.BadParam("version", f"{name} has versions {', '.join(map(str, versions))}")
            await asyncio.to_thread(edits.promote, store, name, int(raw), label, by)
        else:
            await asyncio.to_thread(edits.rollback, store, name, label, by)
    except edits.PromptEditError as e:
        raise GatewayError(str(e), status=409, type="invalid_request_error") from None
    result = await request.config_dict[HOLDER].reload(f"console {action} by {request[USER].principal.name}")
    if not result.ok:
        log.error("prompt %s %s by console: the reload reported problems: %s", name, action, result.problems)
    return web.Response(status=303, headers={"Location": f"/ui/prompts/{name}"})


async def promote(request: web.Request) -> web.StreamResponse:
    return await _label_move(request, "promote")


async def rollback(request: web.Request) -> web.StreamResponse:
    return await _label_move(request, "rollback")


# ---- the sub-application ---------------------------------------------------------------------------
async def home(request: web.Request) -> web.StreamResponse:
    return web.Response(status=303, headers={"Location": "/ui/"})


def build_console(settings: ConsoleSettings, state_dir: Path | None) -> web.Application:
    """Raises session.SecretError (a start-up error) when the configured secret is unusable."""
    sub = web.Application(middlewares=[auth.console_middleware])
    sub[auth.SESSIONS] = Sessions(load_secret(settings.secret_env, state_dir), settings.session_hours * 3600)
    r = sub.router
    r.add_get("/", overview)
    r.add_get("/login", auth.login_get)
    r.add_post("/login", auth.login_post)
    r.add_post("/logout", auth.logout)
    r.add_get("/requests", requests_list)
    r.add_get("/requests/{id}", request_detail)
    r.add_get("/guardrails", guardrails)
    r.add_get("/prompts", prompts_list)
    r.add_get("/prompts/{name}", prompt_detail)
    r.add_get("/prompts/{name}/diff", prompt_diff)
    r.add_post("/prompts/{name}/promote", promote)
    r.add_post("/prompts/{name}/rollback", rollback)
    r.add_get("/api/overview", api_overview)
    r.add_get("/api/requests", api_requests)
    r.add_get("/api/guardrails", api_guardrails)
    r.add_static("/static/", STATIC, append_version=False)
    return sub
