"""One request, one path: parse -> request checks -> upstream -> response/stream checks -> reply."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from gateway.checks.base import Action, OutputSegment
from gateway.checks.pii import PSEUDONYMS
from gateway.conversation import completion_text, first_image
from gateway.dialects import ANTHROPIC_MESSAGES, OPENAI_RESPONSES, Dialect
from gateway.dialects.anthropic_messages import to_chat as anthropic_to_chat
from gateway.errors import GatewayError, InvalidRequest
from gateway.exchange import Exchange
from gateway.experiments.assign import unit_of
from gateway.cache.replay import CachedStream, completion_chunks
from gateway.cache.service import answer_complete
from gateway.metering import counting
from gateway.keys import CACHE, EXCHANGE, HOLDER, METER, RESPONSES, TRACE
from gateway.model_calls import MODEL_CALLER, ModelCaller
from gateway.pii.anonymize import Pseudonyms
from gateway.pipeline import Pipeline
from gateway.routing import Route
from gateway.runtime import Runtime
from gateway.stream_relay import relay_stream
from gateway.telemetry.content import attach as trace_content
from gateway.upstreams.base import Upstream
from gateway.upstreams.mock_model import validate_overrides
from gateway.validation import parse_json, pop_gateway_options, validate_chat, validate_embeddings


T = TypeVar("T")


def _too_big(limit: int) -> GatewayError:
    return GatewayError(
        f"Request body is larger than the gateway's limit of {limit} bytes (server.max_body_mb).",
        status=413, type="invalid_request_error", code="request_too_large",
    )


async def read_body(request: web.Request, settings) -> bytes:
    """The request body, within `server.max_body_mb` and `server.body_timeout_s` (a client that
    sends its body slower gets 408, and its connection is closed)."""
    limit = int(settings.max_body_mb * 1024 * 1024)
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            if request.content_length is not None:
                if request.content_length > limit:
                    raise _too_big(limit)
                return await request.read()
            buf = bytearray()  # chunked upload: count as it arrives
            async for chunk in request.content.iter_any():
                buf += chunk
                if len(buf) > limit:
                    raise _too_big(limit)
            return bytes(buf)
    except TimeoutError:
        raise GatewayError(f"The request body did not arrive within {settings.body_timeout_s:g}s "
                           "(server.body_timeout_s).", status=408, type="invalid_request_error",
                           code="request_timeout", headers={"Connection": "close"}) from None


def credential(request: web.Request, dialect: Dialect | None) -> str | None:
    """The Authorization header; Anthropic clients send their key as `x-api-key` instead."""
    authorization = request.headers.get("Authorization")
    if authorization is None and dialect is ANTHROPIC_MESSAGES and (key := request.headers.get("x-api-key")):
        return f"Bearer {key}"
    return authorization


async def _begin(request: web.Request, endpoint: str, dialect: Dialect | None = None
                 ) -> tuple[Runtime, Exchange, Route, Pipeline]:
    """Authenticate, parse, validate, route, admit (limits) and run the request checks - unless the
    policy lets them overlap the upstream call (chat only), in which case the caller runs them.
    `dialect`: the client's API, translated into the chat form here, before anything reads the body."""
    rt: Runtime = request.app[HOLDER].current
    ex = Exchange(endpoint, {})  # type: ignore[arg-type]
    ex.metered = rt.metering
    ex.dialect = dialect
    request[EXCHANGE] = ex  # from here on the request is recorded, whatever happens
    ex.trace = trace = request.get(TRACE)
    principal = rt.keys.authenticate(credential(request, dialect))
    ex.key_name, ex.group, ex.policy = principal.name, principal.group, principal.policy
    body = ex.body = parse_json(await read_body(request, rt.settings))
    options = ex.options = pop_gateway_options(body)
    if dialect is not None:
        ex.client_body = body
        body = ex.body = await dialect.to_chat(request.app, ex, body)
    if rt.experiments and endpoint == "chat.completions":
        t0 = time.time_ns()
        apply_experiment(ex, rt, request)
        if trace is not None and ex.experiment is not None:
            trace.mark("experiment assignment", t0, {"gateway.experiment": ex.experiment.experiment,
                                                     "gateway.variant": ex.experiment.variant.name})
    if ex.options.prompt is not None:
        t0 = time.time_ns()
        apply_prompt(ex, rt)
        if trace is not None:
            trace.mark("prompt render", t0, {"gateway.prompt.name": ex.prompt.name,
                                             "gateway.prompt.version": ex.prompt.version,
                                             "gateway.prompt.hash": ex.prompt.hash})
    (validate_chat if endpoint == "chat.completions" else validate_embeddings)(body)
    if options.mock and (problem := validate_overrides(options.mock)):
        raise InvalidRequest(problem, param="gateway.mock")
    ex.model = body["model"]
    user = options.user_id or body.get("user")
    if user:
        ex.user_ref = rt.user_ref(user)
    principal.check_model(ex.model)
    route = rt.router.get(ex.model)
    ex.routed = True
    if not route.cfg.vision and endpoint == "chat.completions" and (where := first_image(body.get("messages"))):
        at = where if dialect is None else f"{where} of the request in chat form"
        raise InvalidRequest(f"Model {ex.model!r} does not take images (its route says `vision: false`); remove the "
                             f"image at {at}.", param=where if dialect is None else None, code="images_not_supported")
    ex.stream = bool(body.get("stream"))
    if rt.metering and principal.scopes:
        await request.app[METER].admit(ex, rt, principal)
    pipeline = rt.pipelines[principal.policy]
    if not (pipeline.overlap_upstream and endpoint == "chat.completions"):
        await pipeline.run_request(ex)
    return rt, ex, route, pipeline


async def alongside_checks(ex: Exchange, pipeline: Pipeline, upstream_call: Awaitable[T]) -> T:
    """Start the upstream call, run the request checks meanwhile; if a check blocks, cancel the call
    (its result, if any, is dropped: nothing of a blocked request reaches the client)."""
    if not pipeline.overlap_upstream:
        return await upstream_call
    task = asyncio.ensure_future(upstream_call)
    try:
        await pipeline.run_request(ex)
    except BaseException:
        task.cancel()
        try:
            result = await task
        except BaseException:  # cancelled, or failed on its own: either way nothing to release
            pass
        else:  # it finished first: an opened stream must still be closed
            stream = result[0] if isinstance(result, tuple) else result
            if hasattr(stream, "aclose"):
                await stream.aclose()
        raise
    return await task


def apply_experiment(ex: Exchange, rt: Runtime, request: web.Request) -> None:
    """Assign the request to the first active experiment it matches (a request takes part in at most
    one), and apply the variant's overrides: model, prompt version/label, parameters."""
    prompt = ex.options.prompt
    candidates = rt.experiments_for(ex.body.get("model"), prompt.name if prompt else None)
    if not candidates:
        return
    now = datetime.datetime.now(datetime.UTC)
    for splitter in candidates:
        if not splitter.active(now):
            continue
        unit = unit_of(splitter.exp.unit, request.headers, ex.body, ex.options.user_id, ex.key_name)
        if unit is None:
            continue  # no unit id, no assignment: served as the client asked, recorded without experiment
        assignment = splitter.assign(unit)
        variant = assignment.variant
        if variant.model is not None:
            ex.body["model"] = variant.model
        if variant.prompt is not None and prompt is not None:
            ex.options = ex.options.model_copy(update={"prompt": prompt.model_copy(
                update={"version": variant.prompt.version, "label": variant.prompt.label})})
        ex.body.update(variant.params)
        ex.experiment = assignment
        request.app[METER].remember_assignment(ex.id, assignment)
        return


def apply_prompt(ex: Exchange, rt: Runtime) -> None:
    """Render `gateway.prompt` into the request. The rule: the prompt's messages come first, then the
    client's own `messages` (a conversation so far); the prompt's model applies when the request's
    `model` is absent, empty or "prompt"; its params apply where the request sets none."""
    if ex.endpoint != "chat.completions":
        raise InvalidRequest("`gateway.prompt` applies to chat completions only.", param="gateway.prompt")
    req = ex.options.prompt
    rendered = rt.prompts.render((req.name, req.version, req.label), req.variables)
    client = ex.body.get("messages")
    if client is not None and not isinstance(client, list):
        raise InvalidRequest("`messages` must be an array of message objects.", param="messages")
    ex.body["messages"] = [*rendered.messages, *(client or [])]
    if ex.body.get("model") in (None, "", "prompt"):
        if rendered.model is None:
            raise InvalidRequest(f"Prompt {rendered.name}@{rendered.version} has no default model; name one in "
                                 "`model`.", param="model")
        ex.body["model"] = rendered.model
    for key, value in rendered.params.items():
        ex.body.setdefault(key, value)
    ex.prompt = rendered


def json_response(data: dict[str, Any], ex: Exchange) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", headers=ex.response_headers())


# ---- /v1/chat/completions, /v1/messages, /v1/responses ----------------------------------------
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, None)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _chat(request, ANTHROPIC_MESSAGES)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _chat(request, OPENAI_RESPONSES)


async def _chat(request: web.Request, dialect: Dialect | None) -> web.StreamResponse:
    rt, ex, route, pipeline = await _begin(request, "chat.completions", dialect)
    if pipeline.response_checks:  # a check may ask a judge model, through the same routing and metering
        ex.state[MODEL_CALLER] = ModelCaller(request.app, rt, ex)
    cache = request.app[CACHE]
    plan = cache.plan(ex, route, pipeline, request.headers) if cache is not None else None
    if plan is None:
        return await _chat_upstream(request, rt, ex, route, pipeline)
    try:
        record = await cache.lookup(ex, plan)
        if record is None:
            return await _chat_upstream(request, rt, ex, route, pipeline, plan)
        if pipeline.overlap_upstream:  # its request checks did not run in _begin: they must pass first
            await pipeline.run_request(ex)
        completion = cache.serve(ex, rt, record)
        if ex.stream:
            return await relay_stream(request, rt, ex, route, pipeline, alongside_checks,
                                      cached=CachedStream(completion_chunks(completion)))
        return await _respond(request, ex, pipeline, completion)
    finally:
        cache.done(plan)


async def _chat_upstream(request: web.Request, rt: Runtime, ex: Exchange, route: Route, pipeline: Pipeline,
                         plan=None) -> web.StreamResponse:
    """The answer from the upstream; `plan`: a cacheable miss, whose answer is offered to the cache."""
    if ex.stream:
        return await relay_stream(request, rt, ex, route, pipeline, alongside_checks, plan=plan)

    async def call(upstream: Upstream, model: str) -> dict[str, Any]:
        return await upstream.chat(ex, model, ex.body)

    data = await alongside_checks(ex, pipeline, rt.router.call(ex, route, call))
    # as received: restoring pseudonyms and the response checks change `data`
    raw = (orjson.dumps(data), answer_complete(data)) if plan is not None else None
    if ex.trace is not None:
        ex.state["finish_reasons"] = [c.get("finish_reason") or "" for c in data.get("choices") or ()]
    if ex.metered:  # before the checks: withheld output was still generated, and billed
        request.app[METER].settle(ex, rt, data.get("usage"), completion_text(data), data.get("model"))
    response = await _respond(request, ex, pipeline, data)
    if raw is not None:
        await request.app[CACHE].store_answer(ex, plan, *raw)
    return response


async def _respond(request: web.Request, ex: Exchange, pipeline: Pipeline, data: dict[str, Any]) -> web.Response:
    """An answer (the upstream's or the cache's) as this request's client gets it: pseudonyms
    restored, response checks applied, the `gateway` object added."""
    if PSEUDONYMS in ex.state:
        restore_completion(ex.state[PSEUDONYMS], data)
    if pipeline.response_checks:
        await check_completion(ex, pipeline, data)
    if ex.trace is not None and pipeline.trace_content:
        await trace_content(ex.trace, ex.body.get("messages"), [
            (c.get("message") or {}).get("content") or "" for c in data.get("choices") or ()])
    data["gateway"] = ex.gateway_info()
    if ex.dialect is not None:
        data = ex.dialect.from_chat(data, ex)
        if ex.dialect.keep is not None:
            await ex.dialect.keep(request.app, ex, data)
    return json_response(data, ex)


def restore_completion(pseudonyms: Pseudonyms, data: dict[str, Any]) -> None:
    """Put the values the `pii` check pseudonymized back into the answer (contents and tool calls)."""
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            message["content"] = pseudonyms.restore(message["content"])
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = pseudonyms.restore(fn["arguments"])


async def check_completion(ex: Exchange, pipeline: Pipeline, data: dict[str, Any]) -> None:
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        content = message.get("content")
        if not isinstance(content, str) or not content:
            continue
        seg = OutputSegment(choice.get("index", 0), content)
        decision = await pipeline.check_segment(ex, seg, pipeline.response_checks)
        if decision.action is Action.BLOCK:
            message["content"] = ""
            choice["finish_reason"] = "content_filter"
        elif decision.action is Action.REDACT:
            message["content"] = decision.text


# ---- /v1/embeddings ----------------------------------------------------------------------------
async def embeddings(request: web.Request) -> web.Response:
    rt, ex, route, _pipeline = await _begin(request, "embeddings")

    async def call(upstream: Upstream, model: str) -> dict[str, Any]:
        return await upstream.embeddings(ex, model, ex.body)

    data = await rt.router.call(ex, route, call)
    if ex.metered:
        request.app[METER].settle(ex, rt, data.get("usage"), None, data.get("model"))
    data["gateway"] = ex.gateway_info()
    return json_response(data, ex)


async def anthropic_count_tokens(request: web.Request) -> web.Response:
    """`POST /v1/messages/count_tokens`: the gateway's own estimate (tiktoken, the served model's
    encoding family), the same count the rate limiter reserves; no upstream call, no ledger row."""
    rt: Runtime = request.app[HOLDER].current
    principal = rt.keys.authenticate(credential(request, ANTHROPIC_MESSAGES))
    body = parse_json(await read_body(request, rt.settings))
    pop_gateway_options(body)
    chat = anthropic_to_chat(body, counting=True)
    principal.check_model(chat["model"])
    enc = counting.encoding_for_model(chat["model"], rt.prices.file.default_encoding)
    tokens = counting.count_chat_request(chat, enc.name)
    return web.Response(body=orjson.dumps({"input_tokens": tokens, "gateway": {
        "source": "estimated", "encoding": enc.name}}), content_type="application/json")


# ---- /v1/responses/{id} ------------------------------------------------------------------------
async def get_response(request: web.Request) -> web.Response:
    """A stored response, for the key that made it (another key's is answered as not found)."""
    rt: Runtime = request.app[HOLDER].current
    principal = rt.keys.authenticate(credential(request, OPENAI_RESPONSES))
    if request.query.get("stream") in ("true", "1"):
        raise InvalidRequest("Replaying a stored response as a stream is not supported; fetch it without "
                             "`stream`.", param="stream")
    response = await request.app[RESPONSES].response(request.match_info["id"], principal.name)
    return web.Response(body=orjson.dumps(response), content_type="application/json")


async def response_input_items(request: web.Request) -> web.Response:
    """`GET /v1/responses/{id}/input_items`: the stored response's input, paginated like OpenAI's list
    (`order` desc by default, `limit` 1-100, `after` an item id)."""
    rt: Runtime = request.app[HOLDER].current
    principal = rt.keys.authenticate(credential(request, OPENAI_RESPONSES))
    q = request.query
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("`order` must be asc or desc.", param="order")
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("`limit` must be an integer from 1 to 100.", param="limit")
    items = await request.app[RESPONSES].input_items(request.match_info["id"], principal.name)
    if order == "desc":
        items = items[::-1]
    if (after := q.get("after")) is not None:
        ids = [i.get("id") for i in items]
        if after not in ids:
            raise InvalidRequest(f"`after`: no input item {after!r} in this response.", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    body = {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def delete_response(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    principal = rt.keys.authenticate(credential(request, OPENAI_RESPONSES))
    response_id = request.match_info["id"]
    await request.app[RESPONSES].delete(response_id, principal.name)
    return web.Response(body=orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                        content_type="application/json")


# ---- /v1/models ---------------------------------------------------------------------------------
async def list_models(request: web.Request) -> web.Response:
    rt: Runtime = request.app[HOLDER].current
    anthropic = "anthropic-version" in request.headers  # the anthropic SDK's models.list() shares this path
    principal = rt.keys.authenticate(credential(request, ANTHROPIC_MESSAGES if anthropic else None))
    models = rt.models_for(principal)
    if anthropic:
        data = [{"id": m, "type": "model", "display_name": m, "created_at": "1970-01-01T00:00:00Z"} for m in models]
        page = {"data": data, "has_more": False, "first_id": models[0] if models else None,
                "last_id": models[-1] if models else None}
        return web.Response(body=orjson.dumps(page), content_type="application/json")
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "gateway"} for m in models]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")
