"""The aiohttp application: routes, the error middleware, and long-lived resources in cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiohttp import web

from gateway import proxy
from gateway.experiments import feedback as experiments_api
from gateway.prompts import api as prompts_api
from gateway.dialects import for_path
from gateway.errors import GatewayError, InvalidRequest
from gateway.keys import CACHE, EXCHANGE, HOLDER, METER, POOL, RESPONSES, TRACE, TRACING
from gateway.metering.ledger import spend_by
from gateway.tabular import service as tabular
from gateway.metering.limits import InProcessCounters, day_start, month_start
from gateway.metering.meter import Meter
from gateway.metering.metrics import Metrics
from gateway.reload import RuntimeHolder
from gateway.runtime import Runtime
from gateway.state.config import redacted
from gateway.telemetry.tracing import CURRENT_TRACE
from gateway.state.ledger import check as check_ledger_backend
from gateway.state.ledger import open_ledger
from gateway.state.redis import RedisCoordinator, RedisCounters
from gateway.upstreams.openai import HttpPool
from gateway.validation import parse_json

log = logging.getLogger("gateway.app")
access_log = logging.getLogger("gateway.access")

# aiohttp's own cap; the effective limit is server.max_body_mb, checked per request so a reload applies it.
_HARD_BODY_CAP = 1024 * 1024 * 1024


def error_response(request: web.Request, err: GatewayError) -> web.Response:
    """The error in the client's dialect (from the path: auth, CORS and 404 errors come before a
    handler has looked at the request)."""
    ex = request.get(EXCHANGE)
    dialect = for_path(request.path)
    body = dialect.error_body(err) if dialect is not None else err.body()
    headers = dict(err.headers)
    if (trace := request.get(TRACE)) is not None:
        headers["x-gateway-trace-id"] = trace.trace_id
    if ex is not None:
        headers["x-gateway-request-id"] = ex.id
        body["gateway"] = ex.gateway_info()
    return web.Response(status=err.status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    status = 500
    tracing = request.app[TRACING]
    trace = request[TRACE] = tracing.start(request.headers, request.method, request.path) if tracing else None
    token = CURRENT_TRACE.set(trace) if trace is not None else None
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except GatewayError as e:
        status = e.status
        if (ex := request.get(EXCHANGE)) is not None and ex.error is None:
            ex.error = e.code or e.type
        return error_response(request, e)
    except web.HTTPException as e:
        status = e.status
        if e.status < 400:
            raise
        err = GatewayError(e.reason if e.status != 404 else f"No route {request.method} {request.path}",
                           status=e.status, type="invalid_request_error",
                           code="not_found" if e.status == 404 else None)
        return error_response(request, err)
    except (asyncio.CancelledError, ConnectionError):
        status = 499  # the client went away
        raise
    except Exception:
        ex = request.get(EXCHANGE)
        log.exception("internal error on %s %s (request %s)", request.method, request.path, ex.id if ex else "-")
        return error_response(request, GatewayError("Internal gateway error; see the gateway log."))
    finally:
        ex = request.get(EXCHANGE)
        if ex is not None and ex.metered:
            meter = request.app[METER]
            # The ledger row is journaled before aiohttp writes the response (a crash after the client
            # has its answer must not lose it); the rest of the bookkeeping runs after the write.
            recorded = _journal(meter, ex, status)
            asyncio.get_running_loop().call_soon(_record, meter, ex, status, recorded)
        if access_log.isEnabledFor(logging.INFO):
            ms = (time.perf_counter() - t0) * 1000
            fields = {"method": request.method, "path": request.path, "status": status, "latency_ms": round(ms, 3)}
            if ex is not None:
                fields.update(request_id=ex.id, key=ex.key_name, model=ex.model or None, endpoint=ex.api,
                              upstream=ex.served_by.upstream if ex.served_by else None,
                              attempts=len(ex.attempts), error=ex.error or ex.stream_error)
            if trace is not None:
                fields["trace_id"] = trace.trace_id
            access_log.info("%s %s %d %.1fms id=%s key=%s model=%s", request.method, request.path, status, ms,
                            ex.id if ex else "-", ex.key_name if ex else "-", ex.model if ex else "-",
                            extra={"gateway": fields})
        if trace is not None:
            trace.finish(ex, status, request.path)
            CURRENT_TRACE.reset(token)


_JSON_TYPES = ("application/json",)
_CORS_HEADERS = ("Authorization, Content-Type, X-Gateway-Key, X-Request-Id, Traceparent, X-Api-Key, "
                 "Anthropic-Version, Anthropic-Beta")


@web.middleware
async def browser_middleware(request: web.Request, handler) -> web.StreamResponse:
    """What a web page the user happens to open may do to a gateway on their machine: nothing,
    unless its origin is listed in `server.cors_origins`. A cross-site form or `text/plain` fetch
    needs no CORS preflight, so bodies must be JSON (415 otherwise) and a request whose `Origin`
    is neither listed nor the gateway's own is refused (403)."""
    origin = request.headers.get("Origin")
    settings = request.app[HOLDER].current.settings
    allowed = origin is not None and (origin in settings.cors_origins or origin == f"{request.scheme}://{request.host}")
    if origin is not None and not allowed:
        raise GatewayError(f"Requests from the web origin {origin!r} are not allowed; list it in server.cors_origins "
                           "in gateway.yaml to let that page call the gateway.", status=403,
                           type="invalid_request_error", code="origin_not_allowed")
    if request.method == "OPTIONS":
        if origin is None:
            raise GatewayError("CORS preflight without an Origin header.", status=400, type="invalid_request_error")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": _CORS_HEADERS, "Access-Control-Max-Age": "600"})
    # The console's forms are the exception: its POSTs need a session cookie (SameSite=Strict) and a CSRF token.
    if (request.method == "POST" and request.body_exists and not _is_json(request.content_type)
            and not request.path.startswith("/ui/")):
        raise GatewayError(f"Send the body as JSON with `Content-Type: application/json` (got "
                           f"{request.content_type!r}).", status=415, type="invalid_request_error",
                           code="unsupported_media_type")
    resp = await handler(request)
    if origin is not None:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Vary"] = "Origin"
    return resp


def _is_json(content_type: str) -> bool:
    return content_type in _JSON_TYPES or (content_type.startswith("application/") and content_type.endswith("+json"))


def _journal(meter, ex, status: int) -> bool:
    try:
        meter.record_row(ex, status, ex.group)
        return True
    except Exception:  # recording must never take the gateway down; finish() tries the row again
        log.exception("ledger row failed for request %s", ex.id)
        return False


def _record(meter, ex, status: int, recorded: bool = False) -> None:
    try:
        meter.finish(ex, status, ex.group, recorded=recorded)
    except Exception:  # recording must never take the gateway down; it is logged and counted
        log.exception("metering failed for request %s", ex.id)


# ---- small endpoints ---------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


_OPENAPI: list[bytes] = []  # built on the first request (it imports the dialects' tables), then served as is


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI document (gateway/openapi.py): static, names nothing configured, so no key is needed."""
    if not _OPENAPI:
        from gateway import openapi

        _OPENAPI.append(orjson.dumps(openapi.document()))
    return web.Response(body=_OPENAPI[0], content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    holder = request.app[HOLDER]
    return web.json_response(holder.status(), status=200 if holder.ready else 503, dumps=_dumps)


def _admin(request: web.Request) -> RuntimeHolder:
    holder = request.app[HOLDER]
    principal = holder.current.keys.authenticate(request.headers.get("Authorization"))
    if not principal.admin:
        raise GatewayError("This key is not an admin key (set `admin: true` on it in gateway.yaml).",
                           status=403, type="invalid_request_error", code="not_admin")
    return holder


async def admin_reload(request: web.Request) -> web.Response:
    result = await _admin(request).reload("admin endpoint")
    body = {"ok": result.ok, "problems": result.problems}
    return web.json_response(body, status=200 if result.ok else 422, dumps=_dumps)


async def admin_cache_clear(request: web.Request) -> web.Response:
    """Drop cache entries: all, or those of one key / group and/or one model (`gateway cache clear`)."""
    _admin(request)
    cache = request.app[CACHE]
    if cache is None:
        raise GatewayError("The response cache is off (`cache: {enabled: true}` in gateway.yaml turns it on).",
                           status=409, type="invalid_request_error", code="cache_off")
    raw = await request.read()
    body = parse_json(raw) if raw.strip() else {}
    unknown = set(body) - {"key", "group", "model"}
    if unknown or not all(isinstance(body.get(k), (str, type(None))) for k in ("key", "group", "model")):
        raise InvalidRequest("The body may name `key`, `group` and `model` (strings), nothing else"
                             + (f"; got {sorted(unknown)}" if unknown else ""), param=", ".join(sorted(unknown)) or None)
    if body.get("key") and body.get("group"):
        raise InvalidRequest("Name a `key` or a `group`, not both.", param="group")
    scope = (f"key:{body['key']}" if body.get("key") else f"group:{body['group']}" if body.get("group") else None)
    try:
        removed = await cache.clear(scope, body.get("model"))
    except Exception as e:  # noqa: BLE001 - the store is down: say so, with a status that can be retried
        raise GatewayError(f"The cache store could not be cleared ({type(e).__name__}); try again.", status=503,
                           type="service_unavailable", code="cache_unavailable") from None
    log.info("cache cleared (key=%s group=%s model=%s): %d entries", body.get("key") or "*",
             body.get("group") or "*", body.get("model") or "*", removed)
    return web.json_response({"removed": removed}, dumps=_dumps)


async def admin_status(request: web.Request) -> web.Response:
    status = _admin(request).status()
    ledger = request.app[METER].ledger
    if ledger is not None:
        status["ledger"] = {"where": ledger.where, "rows_written": ledger.written, "write_errors": ledger.write_errors,
                            "dropped": ledger.dropped, "last_error": ledger.last_error}
    return web.json_response(status, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    _admin(request)  # key names and spend are operator information
    meter = request.app[METER]
    if meter.ledger is not None:
        meter.metrics.ledger_pending.set(meter.ledger.pending())
    if request.app[CACHE] is not None:
        request.app[CACHE].refresh_gauges()
    return web.Response(body=meter.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _dumps(obj) -> str:
    return orjson.dumps(obj).decode()


# ---- long-lived resources ----------------------------------------------------------------------
async def _backends(app: web.Application) -> AsyncIterator[None]:
    """Shared backends checked before anything else opens (a refused start leaves nothing to close):
    Redis unreachable / wrong password / no scripting, PostgreSQL unreachable / refusing the
    credentials / at a newer schema are start-up errors (StateError) naming the gateway.yaml field."""
    meter = app[METER]
    if meter.ledger is not None:
        await asyncio.to_thread(check_ledger_backend, app[HOLDER].current.state)
    if isinstance(meter.counters, RedisCounters):
        await meter.counters.check()
    yield


async def _http_pool(app: web.Application) -> AsyncIterator[None]:
    pool = app[POOL]
    await pool.open()
    yield
    await pool.close()


async def _metering(app: web.Application) -> AsyncIterator[None]:
    """Budgets survive restarts: today's and this month's spend are rebuilt from the ledger first."""
    meter = app[METER]
    ledger = meter.ledger
    if ledger is not None:
        try:  # rows a crashed run had journaled but not committed, before spend is read from the ledger
            await asyncio.to_thread(ledger.recover)
        except Exception as e:
            log.error("could not replay the ledger journal (%s); its files are kept", e)
    shared = isinstance(meter.counters, RedisCounters)
    if ledger is not None and (shared or isinstance(meter.counters, InProcessCounters)):
        await _seed_spend(meter.counters, ledger)
    if ledger is not None:
        ledger.start()
    watch = (asyncio.create_task(_reseed_when_redis_forgets(meter.counters, ledger))
             if shared and ledger is not None else None)
    yield
    if watch is not None:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    if shared:
        await meter.counters.close()
    if ledger is not None:
        await asyncio.to_thread(ledger.close)


async def _seed_spend(counters, ledger) -> None:
    """Today's and this month's spend per key and group, from the ledger into the counters."""
    now = time.time()
    seeds: dict[str, dict[str, float]] = {}
    for column, prefix in (("key", "key:"), ("grp", "group:")):
        for period, since in (("day", day_start(now)), ("month", month_start(now))):
            try:
                spent = await asyncio.to_thread(spend_by, ledger.reader, since, column)
            except Exception as e:  # an unreadable ledger must not stop the gateway: say so, go on
                log.error("could not rebuild spend from %s (%s); budgets start from zero", ledger.where, e)
                spent = {}
            seeds.setdefault(period, {}).update({prefix + k: v for k, v in spent.items()})
    if isinstance(counters, RedisCounters):
        await counters.seed_spend(seeds.get("day", {}), seeds.get("month", {}))
    else:
        counters.seed_spend(seeds.get("day", {}), seeds.get("month", {}))


RESEED_CHECK_S = 15.0


async def _reseed_when_redis_forgets(counters: RedisCounters, ledger) -> None:
    """Redis restarted empty or evicted the spend while the gateway runs: budgets would start again
    from zero. Checked every RESEED_CHECK_S; the spend is rebuilt from the ledger (every replica's,
    with `ledger: postgres`)."""
    while True:
        await asyncio.sleep(RESEED_CHECK_S)
        try:
            if await counters.needs_seed():
                log.warning("Redis holds no budget spend (restarted or evicted): rebuilding it from %s", ledger.where)
                await _seed_spend(counters, ledger)
        except Exception as e:  # the next round tries again
            log.error("could not rebuild budget spend in Redis (%s)", e)


async def _policies(app: web.Application) -> AsyncIterator[None]:
    holder = app[HOLDER]
    tasks = [asyncio.create_task(holder.warm_initial())]
    interval = holder.current.settings.watch_interval_s
    if interval > 0:
        tasks.append(asyncio.create_task(holder.watch(interval)))
    loop = asyncio.get_running_loop()
    hup = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        # Only possible in the main thread of the process (not when tests run the app in a thread).
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(holder.reload("SIGHUP")))
        hup = True
    yield
    if hup:
        loop.remove_signal_handler(signal.SIGHUP)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for upstream in holder.current.upstreams.values():
        await upstream.close()


def prediction_store(runtime: Runtime, ledger_path: Path) -> tabular.PredictionStore:
    """The tabular prediction log lives with the ledger: tabular.db beside it, or PostgreSQL."""
    if runtime.state.ledger == "postgres":
        from gateway.state.postgres import PostgresPredictionLog

        return tabular.PredictionStore(backend=PostgresPredictionLog(runtime.state))
    return tabular.PredictionStore(ledger_path.with_name("tabular.db"))


def tracing_for(runtime: Runtime, metrics_: Metrics):
    """The app's Tracing when `telemetry.enabled`, else None (no export thread, nothing per request)."""
    if not runtime.telemetry.enabled:
        return None
    from gateway.telemetry.tracing import Counters, Tracing

    m = metrics_
    counters = Counters(exported=m.trace_exported.inc, dropped=lambda reason, n: m.child(m.trace_dropped, reason).inc(n),
                        bad_traceparent=m.trace_bad_parent.inc)
    return Tracing(runtime.telemetry, counters)


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    tracing = app[TRACING]
    if tracing is not None:
        log.info("tracing: OTLP/HTTP to %s, sampling %g", redacted(tracing.endpoint.split("?")[0]), tracing.ratio)
    yield
    if tracing is not None:
        await asyncio.to_thread(tracing.shutdown)  # the spans still queued are sent (bounded by the export timeout)


def counter_store(runtime: Runtime, metrics_: Metrics):
    """The CounterStore `state.counters` names, chosen once here (the rest of the gateway never asks)."""
    if runtime.state.counters == "redis":
        return RedisCounters(runtime.state, runtime.state.redis_url() or "",
                             on_error=metrics_.child(metrics_.state_errors, "redis").inc)
    return InProcessCounters()


def store_kind(store: str, runtime: Runtime) -> str:
    """A `store:` setting (`cache.store`, `responses.store`) with auto resolved: redis when the
    counters are in Redis, else embedded."""
    if store == "auto":
        return "redis" if runtime.state.counters == "redis" else "embedded"
    return store


def cache_store_kind(runtime: Runtime) -> str:
    return store_kind(runtime.cache.store, runtime)


def response_cache(runtime: Runtime, metrics_: Metrics, ledger_path: Path | None):
    """The ResponseCache `cache:` describes, or None when it is off (chosen once, at start-up)."""
    settings = runtime.cache
    if not settings.enabled:
        return None
    from gateway.cache.service import ResponseCache

    if cache_store_kind(runtime) == "redis":
        from gateway.state.redis_cache import RedisCache

        store = RedisCache(runtime.state.redis_url() or "", runtime.state.key_prefix, runtime.state.timeout_s)
    else:
        from gateway.state.embedded_cache import EmbeddedCache

        path = ledger_path.with_name("cache.db") if settings.persist and ledger_path is not None else None
        store = EmbeddedCache(settings.max_entries, int(settings.max_mb * 1024 * 1024), path)
        if store.corrupt:
            metrics_.child(metrics_.cache_errors, "corrupt").inc(store.corrupt)
    return ResponseCache(settings, store, metrics_)


def response_store_kind(runtime: Runtime) -> str:
    return store_kind(runtime.responses.store, runtime)


def stored_responses(runtime: Runtime, metrics_: Metrics):
    """Where Responses-API responses are kept for previous_response_id (chosen once, at start-up)."""
    from gateway.dialects.stored_responses import StoredResponses

    settings = runtime.responses
    if response_store_kind(runtime) == "redis":
        from gateway.state.redis_responses import RedisResponses

        backend = RedisResponses(runtime.state.redis_url() or "", runtime.state.key_prefix, runtime.state.timeout_s)
    else:
        from gateway.state.embedded_responses import EmbeddedResponses

        backend = EmbeddedResponses(int(settings.max_mb * 1024 * 1024))
    return StoredResponses(settings, backend, on_error=metrics_.child(metrics_.state_errors, "responses").inc)


async def _cache(app: web.Application) -> AsyncIterator[None]:
    warm = None
    if app[CACHE] is not None and any(r.cfg.cache.semantic for r in app[HOLDER].current.router.routes.values()):
        from gateway.models import embedder
        from gateway.models.workers import run_model

        # MiniLM loads in the background (~7 s): the first semantic lookup should not wait for it
        warm = asyncio.ensure_future(run_model(embedder.load))
    yield
    if warm is not None:
        warm.cancel()
        await asyncio.gather(warm, return_exceptions=True)
    cache = app[CACHE]
    if cache is not None:
        await cache.close()
    await app[RESPONSES].close()


def build_app(
    policies_dir: Path, runtime: Runtime, pool: HttpPool, *, ledger_path: Path | None = None,
    prompts_dir: Path | None = None, vet=None,
) -> web.Application:
    """`ledger_path` None: no ledger (usage still counted, metrics still kept)."""
    app = web.Application(middlewares=[errors_middleware, browser_middleware], client_max_size=_HARD_BODY_CAP)
    app[POOL] = pool
    app[HOLDER] = RuntimeHolder(policies_dir, pool, runtime, prompts_dir=prompts_dir, vet=vet)
    metrics_ = Metrics()
    ledger = None
    if ledger_path is not None:
        ledger = open_ledger(runtime.state, ledger_path, on_write_error=metrics_.ledger_errors.inc, on_written=metrics_.ledger_rows.inc,
                        journal_dir=runtime.ledger_journal)
    app[METER] = Meter(metrics_, counter_store(runtime, metrics_), ledger)
    if isinstance(app[METER].counters, RedisCounters):
        app[tabular.COORDINATOR] = RedisCoordinator(app[METER].counters)
    app[TRACING] = tracing_for(runtime, metrics_)
    app[CACHE] = response_cache(runtime, metrics_, ledger_path)
    app[RESPONSES] = stored_responses(runtime, metrics_)
    app.cleanup_ctx.append(_backends)
    app.cleanup_ctx.append(_cache)
    app.cleanup_ctx.append(_tracing)
    app.cleanup_ctx.append(_http_pool)
    app.cleanup_ctx.append(_metering)  # set up before, torn down after the policies (last rows flushed)
    app.cleanup_ctx.append(_policies)
    app[tabular.STORE] = prediction_store(runtime, ledger_path) if ledger_path else None
    app.cleanup_ctx.append(tabular.lifecycle)
    app.router.add_post("/v1/chat/completions", proxy.chat_completions)
    app.router.add_post("/v1/messages", proxy.messages)
    app.router.add_post("/v1/messages/count_tokens", proxy.anthropic_count_tokens)
    app.router.add_post("/v1/responses", proxy.responses)
    app.router.add_get("/v1/responses/{id}", proxy.get_response)
    app.router.add_get("/v1/responses/{id}/input_items", proxy.response_input_items)
    app.router.add_delete("/v1/responses/{id}", proxy.delete_response)
    app.router.add_post("/v1/embeddings", proxy.embeddings)
    app.router.add_get("/v1/models", proxy.list_models)
    app.router.add_get("/v1/prompts", prompts_api.list_prompts)
    app.router.add_get("/v1/prompts/{name}", prompts_api.show_prompt)
    app.router.add_post("/v1/feedback", experiments_api.post_feedback)
    app.router.add_get("/v1/experiments", experiments_api.list_experiments)
    app.router.add_get("/v1/experiments/{name}", experiments_api.experiment_report)
    app.router.add_post("/v1/tabular/{model}/predict", tabular.predict)
    app.router.add_post("/v1/tabular/{model}/feedback", tabular.feedback)
    app.router.add_get("/v1/tabular/{model}/drift", tabular.drift_report)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_get("/admin/status", admin_status)
    app.router.add_post("/admin/cache/clear", admin_cache_clear)
    app.router.add_get("/metrics", metrics)
    if runtime.console.enabled:
        from gateway.console.routes import build_console, home

        app.router.add_get("/ui", home)
        app.add_subapp("/ui", build_console(runtime.console, ledger_path.parent if ledger_path is not None else None))
    return app
