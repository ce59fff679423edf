"""The OpenAPI 3.1 document of the gateway's own HTTP API: `GET /openapi.json`, `gateway openapi`.

Request bodies come from what validates them: the chat and embeddings parameters from the checker
tables of gateway/validation.py (each checker carries its JSON Schema), the Messages and Responses
fields from their dialects' field sets (unknown fields are refused there, so the schemas say
`additionalProperties: false`), the `gateway` extension object and the tabular, feedback and
configuration models from their pydantic models. Responses are described with the fields the gateway
always sends and leave room for more (providers add fields; the gateway forwards them).

The document is static: it names no configured model, key or upstream, so serving it needs no key.
tests/test_openapi.py checks that every route of the app is in it and that real responses validate.
"""

from __future__ import annotations

from typing import Any

from gateway import validation

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _pydantic(models: dict[str, Any], components: dict[str, Any]) -> None:
    """Add pydantic models (and the models they use) to the components."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(m, "validation") for m in models.values()], ref_template=_REF)
    components.update(top.get("$defs", {}))


def _schemas() -> dict[str, Any]:
    from gateway.dialects import anthropic_messages, responses
    from gateway.exchange import GatewayOptions

    v = validation
    params = {k: _nullable(c.schema) for k, c in v.CHAT_PARAMS.items()}  # null = not given, as OpenAI
    c: dict[str, Any] = {}
    _pydantic({"GatewayOptions": GatewayOptions}, c)
    c["Error"] = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "object", "required": ["message", "type"], "properties": {
            "message": {"type": "string", "description": "what is wrong and what to fix"},
            "type": {"type": "string", "description": "invalid_request_error, authentication_error, "
                                                      "permission_error, rate_limit_error, upstream_error, ..."},
            "param": {"type": ["string", "null"], "description": "the field at fault, e.g. messages[0].role"},
            "code": {"type": ["string", "null"]}}},
        "gateway": _ref("GatewayInfo")}}
    c["AnthropicError"] = {"type": "object", "required": ["type", "error"], "properties": {
        "type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"], "properties": {
            "type": {"type": "string"}, "message": {"type": "string"}, "param": {"type": ["string", "null"]}}},
        "gateway": _ref("GatewayInfo")}}
    c["Verdict"] = {"type": "object", "required": ["check", "type", "phase", "action", "status"], "properties": {
        "check": {"type": "string"}, "type": {"type": "string"}, "phase": {"enum": ["request", "response"]},
        "action": {"enum": ["allow", "flag", "redact", "block"]}, "status": {"enum": ["ok", "error", "timeout"]},
        "latency_ms": {"type": "number"}, "score": {"type": ["number", "null"]}}}
    c["GatewayInfo"] = {
        "type": "object", "description": "what the gateway did: the `gateway` object on every answer",
        "required": ["request_id"], "properties": {
            "request_id": {"type": "string"}, "policy": {"type": ["string", "null"]},
            "route": {"type": "object", "properties": {"model": {"type": "string"}, "upstream": {"type": "string"},
                                                       "target": {"type": "string"}, "attempts": {"type": "integer"}}},
            "usage": {"type": "object", "properties": {
                "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                "cached_tokens": {"type": "integer"}, "source": {"enum": ["upstream", "estimated", "none"]}}},
            "cost_usd": {"type": ["number", "null"]}, "verdicts": {"type": "array", "items": _ref("Verdict")},
            "overhead_ms": {"type": "number"}, "prompt": {"type": "object"}, "experiment": {"type": "object"},
            "cache": {"type": "object"}}}
    c["Message"] = v.MESSAGE_SCHEMA
    c["ChatCompletionRequest"] = {
        "type": "object", "required": ["model", "messages"],
        "description": "OpenAI's Chat Completions request. Parameters not listed are forwarded untouched.",
        "properties": {"model": {"type": "string", "minLength": 1,
                                 "description": "a route of gateway.yaml `models:`, or `prompt` with gateway.prompt"},
                       "messages": {"type": "array", "minItems": 1, "items": _ref("Message")},
                       **params, "gateway": _ref("GatewayOptions")}}
    usage = {"type": "object", "properties": {"prompt_tokens": {"type": "integer"},
                                              "completion_tokens": {"type": "integer"},
                                              "total_tokens": {"type": "integer"}}}
    c["ChatCompletion"] = {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "usage": _nullable(usage), "gateway": _ref("GatewayInfo"),
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message"], "properties": {
            "index": {"type": "integer"}, "finish_reason": {"type": ["string", "null"]},
            "message": {"type": "object", "required": ["role"], "properties": {
                "role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
                "tool_calls": {"type": "array"}, "refusal": {"type": ["string", "null"]}}}}}}}}
    c["ChatCompletionChunk"] = {
        "type": "object", "required": ["object", "choices"],
        "description": "one `data:` event of a stream (text/event-stream), which ends with `data: [DONE]`",
        "properties": {"id": {"type": "string"}, "object": {"const": "chat.completion.chunk"},
                       "choices": {"type": "array"}, "usage": _nullable(usage), "gateway": _ref("GatewayInfo")}}
    c["EmbeddingsRequest"] = {"type": "object", "required": ["model", "input"], "properties": {
        "model": {"type": "string", "minLength": 1}, "input": v.EMBEDDING_INPUT_SCHEMA,
        **{k: _nullable(ch.schema) for k, ch in v.EMBEDDING_PARAMS.items()}, "gateway": _ref("GatewayOptions")}}
    c["Embeddings"] = {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "model": {"type": "string"}, "usage": {"type": "object"},
        "data": {"type": "array", "items": {"type": "object", "required": ["index", "embedding"], "properties": {
            "object": {"const": "embedding"}, "index": {"type": "integer"},
            "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}}}},
        "gateway": _ref("GatewayInfo")}}
    c["ModelList"] = {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object"], "properties": {
                "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                "owned_by": {"type": "string"}}}}}}
    refused = ", ".join(sorted(anthropic_messages._NO_COUNTERPART))
    c["AnthropicMessagesRequest"] = {
        "type": "object", "required": ["model", "messages", "max_tokens"], "additionalProperties": False,
        "description": f"Anthropic's Messages request; translated to the gateway's internal chat form. "
                       f"Refused by name (no counterpart there): {refused}.",
        "properties": {**{k: {} for k in sorted(anthropic_messages._TOP)},
                       "model": {"type": "string", "minLength": 1}, "messages": {"type": "array", "minItems": 1},
                       "max_tokens": {"type": "integer", "minimum": 1}, "stream": {"type": "boolean"},
                       "gateway": _ref("GatewayOptions")}}
    c["AnthropicCountTokensRequest"] = {
        "type": "object", "required": ["model", "messages"], "properties": {
            "model": {"type": "string", "minLength": 1}, "messages": {"type": "array", "minItems": 1},
            "system": {}, "tools": {"type": "array"}, "gateway": _ref("GatewayOptions")}}
    c["AnthropicMessage"] = {"type": "object", "required": ["id", "type", "role", "content", "model"], "properties": {
        "id": {"type": "string"}, "type": {"const": "message"}, "role": {"const": "assistant"},
        "model": {"type": "string"}, "content": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "stop_reason": {"type": ["string", "null"]}, "usage": {"type": "object", "required": ["input_tokens",
                                                                                              "output_tokens"]},
        "gateway": _ref("GatewayInfo")}}
    c["TokenCount"] = {"type": "object", "required": ["input_tokens"], "properties": {
        "input_tokens": {"type": "integer"}, "gateway": {"type": "object"}}}
    refused = ", ".join(sorted(responses._NO_COUNTERPART))
    c["ResponsesRequest"] = {
        "type": "object", "required": ["model"], "additionalProperties": False,
        "description": f"OpenAI's Responses request; translated to the gateway's internal chat form. "
                       f"Refused by name: {refused}.",
        "properties": {**{k: {} for k in sorted(responses._TOP)}, "model": {"type": "string", "minLength": 1},
                       "input": {"oneOf": [{"type": "string"}, {"type": "array"}]},
                       "previous_response_id": {"type": ["string", "null"]}, "stream": {"type": ["boolean", "null"]},
                       "gateway": _ref("GatewayOptions")}}
    c["Response"] = {"type": "object", "required": ["id", "object", "status", "output"], "properties": {
        "id": {"type": "string"}, "object": {"const": "response"}, "status": {"type": "string"},
        "created_at": {"type": "integer"}, "model": {"type": "string"}, "output": {"type": "array"},
        "usage": {"type": ["object", "null"]}, "gateway": _ref("GatewayInfo")}}
    c["ResponseItems"] = {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array"}, "has_more": {"type": "boolean"}}}
    c["Deleted"] = {"type": "object", "required": ["id", "deleted"], "properties": {
        "id": {"type": "string"}, "object": {"type": "string"}, "deleted": {"const": True}}}
    c["PromptList"] = {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["name", "labels", "versions"], "properties": {
                "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
                "versions": {"type": "array", "items": {"type": "integer"}},
                "description": {"type": "string"}}}}}}
    c["Prompt"] = {"type": "object", "required": ["name", "labels", "versions"], "properties": {
        "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
        "versions": {"type": "array", "items": {"type": "object", "required": ["version", "hash"], "properties": {
            "version": {"type": "integer"}, "hash": {"type": "string"}, "published": {"type": "boolean"}}}}}}
    c["FeedbackRequest"] = {
        "type": "object", "description": "one outcome, or `{\"events\": [...]}` with several",
        "properties": {"request_id": {"type": "string"}, "metric": {"type": "string"}, "value": {"type": "number"},
                       "events": {"type": "array", "items": {"type": "object"}}}}
    c["FeedbackResult"] = {"type": "object"}
    c["ExperimentList"] = {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["name", "variants", "metrics", "active"], "properties": {
                "name": {"type": "string"}, "variants": {"type": "array"}, "metrics": {"type": "array"},
                "active": {"type": "boolean"}, "unit": {"type": "string"}, "description": {"type": "string"}}}}}}
    c["ExperimentReport"] = {"type": "object", "required": ["experiment", "variants", "srm", "comparisons"],
                             "description": "`gateway ab report` as JSON: SRM, always-valid comparisons, decision",
                             "properties": {"experiment": {"type": "string"}, "variants": {"type": "array"},
                                            "srm": {"type": "object"}, "comparisons": {"type": "array"}}}
    c["TabularPredictRequest"] = {"type": "object", "required": ["rows"], "properties": {
        "rows": {"type": "array", "minItems": 1, "items": {
            "type": "object", "description": "the model's features (gateway.yaml tabular.<model>.features)"}}}}
    c["TabularPredictions"] = {"type": "object", "required": ["model", "predictions"], "properties": {
        "model": {"type": "string"}, "predictions": {"type": "array", "items": {
            "type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}}}
    c["TabularFeedbackRequest"] = {
        "type": "object", "description": "`{id, label}` or `{labels: [{id, label}, ...]}`",
        "properties": {"id": {"type": "string"}, "label": {}, "labels": {"type": "array", "items": {
            "type": "object", "required": ["id", "label"]}}}}
    c["TabularFeedbackResult"] = {"type": "object", "required": ["model", "results"], "properties": {
        "model": {"type": "string"}, "results": {"type": "array"}}}
    c["DriftReport"] = {"type": "object", "required": ["model", "window", "drift", "status"], "properties": {
        "model": {"type": "string"}, "window": {"type": "object", "required": ["seconds", "rows", "labelled"]},
        "drift": {"type": "boolean"}, "status": {"type": "string"}, "message": {"type": "string"},
        "data_drift": {"type": "object"}, "prediction_drift": {"type": "object"}, "performance": {"type": "object"}}}
    c["Health"] = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
    c["Readiness"] = {"type": "object", "required": ["ready"], "properties": {
        "ready": {"type": "boolean"}, "policies_dir": {"type": "string"}, "loaded_at": {"type": ["number", "null"]},
        "open_mode": {"type": "boolean"}, "warnings": {"type": "array", "items": {"type": "string"}},
        "last_reload": {"type": "object"}}}
    c["Status"] = {**c["Readiness"], "description": "readiness plus the ledger, counters and cache"}
    c["ReloadResult"] = {"type": "object", "required": ["ok", "problems"], "properties": {
        "ok": {"type": "boolean"}, "problems": {"type": "array", "items": {"type": "string"}}}}
    c["CacheCleared"] = {"type": "object"}
    c["ConsoleOverview"] = {"type": "object", "required": ["first_hour", "end_hour", "bucket_hours", "overview",
                                                           "breakdowns", "budgets"], "properties": {
        "first_hour": {"type": "integer"}, "end_hour": {"type": "integer"}, "bucket_hours": {"enum": [1, 24]},
        "overview": {"type": "object", "required": ["series", "totals"], "properties": {
            "series": {"type": "array", "items": {"type": "object", "required": ["t", "requests"]}},
            "totals": {"type": "object"}}},
        "breakdowns": {"type": "object", "additionalProperties": {"type": "array"}}, "budgets": {"type": "array"}}}
    c["ConsoleRequests"] = {"type": "object", "required": ["page", "size", "more", "data"], "properties": {
        "page": {"type": "integer"}, "size": {"type": "integer"}, "more": {"type": "boolean"},
        "data": {"type": "array", "items": {"type": "object", "required": ["request_id", "ts"]}}}}
    c["ConsoleGuardrails"] = {"type": "object", "required": ["checks", "totals"], "properties": {
        "checks": {"type": "array"}, "totals": {"type": "object"}}}
    c["ConsoleExperiment"] = {"type": "object"}
    return c


def _errors(*codes: int, schema: str = "Error") -> dict[str, Any]:
    words = {400: "bad input (the message names the field)", 401: "no or unknown key", 403: "not allowed for this key",
             404: "not found", 409: "conflict (e.g. the cache is off, a label differs)", 413: "body too large", 422: "rejected", 429: "rate limit or budget",
             502: "upstream failed", 503: "not ready or a backend is down", 504: "upstream timed out"}
    return {str(code): _json(_ref(schema), words.get(code, "error")) for code in codes}


_LLM_ERRORS = (400, 401, 403, 413, 429, 502, 503, 504)


def _op(summary: str, tag: str, ok: dict[str, Any], *, body: str | None = None, errors=(400, 401),
        error_schema: str = "Error", security: bool = True, params: list[dict[str, Any]] | None = None,
        stream: str | None = None) -> dict[str, Any]:
    responses = {"200": ok, **_errors(*errors, schema=error_schema)}
    if stream:
        responses["200"] = {**ok, "content": {**ok["content"], "text/event-stream": {
            "schema": {"type": "string", "description": f"server-sent events: {stream}"}}}}
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    if not security:
        op["security"] = []
    return op


def _path_param(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": what}


def _query(name: str, what: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}, "description": what}


def paths() -> dict[str, dict[str, Any]]:
    from gateway.console.params import MAX_PAGE_SIZE

    ok = _json
    model_p = _path_param("model", "a model under gateway.yaml `tabular:`")
    return {
        "/v1/chat/completions": {"post": _op(
            "Chat completion (OpenAI dialect), through the policy's checks, routing, cache and metering", "llm",
            ok(_ref("ChatCompletion"), "the completion (or, with stream: true, a stream of chunks)"),
            body="ChatCompletionRequest", errors=_LLM_ERRORS,
            stream="ChatCompletionChunk objects, then `data: [DONE]`")},
        "/v1/embeddings": {"post": _op("Embeddings", "llm", ok(_ref("Embeddings"), "the vectors"),
                                       body="EmbeddingsRequest", errors=_LLM_ERRORS)},
        "/v1/messages": {"post": _op(
            "Anthropic Messages dialect (x-api-key or Bearer)", "llm", ok(_ref("AnthropicMessage"), "the message"),
            body="AnthropicMessagesRequest", errors=_LLM_ERRORS, error_schema="AnthropicError",
            stream="Anthropic's message_start ... message_stop events")},
        "/v1/messages/count_tokens": {"post": _op(
            "Count a Messages request's input tokens", "llm", ok(_ref("TokenCount"), "the count"),
            body="AnthropicCountTokensRequest", errors=(400, 401, 403), error_schema="AnthropicError")},
        "/v1/responses": {"post": _op(
            "OpenAI Responses dialect", "llm", ok(_ref("Response"), "the response"), body="ResponsesRequest",
            errors=_LLM_ERRORS, stream="response.created ... response.completed events")},
        "/v1/responses/{id}": {
            "get": _op("A stored response", "llm", ok(_ref("Response"), "the response"), errors=(401, 404, 503),
                       params=[_path_param("id", "a response id")]),
            "delete": _op("Delete a stored response", "llm", ok(_ref("Deleted"), "deleted"), errors=(401, 404, 503),
                          params=[_path_param("id", "a response id")])},
        "/v1/responses/{id}/input_items": {"get": _op(
            "The input items of a stored response", "llm", ok(_ref("ResponseItems"), "the items"),
            errors=(400, 401, 404, 503), params=[_path_param("id", "a response id")])},
        "/v1/models": {"get": _op("The models this key may call", "llm", ok(_ref("ModelList"), "the models"),
                                  errors=(401,))},
        "/v1/prompts": {"get": _op("Versioned prompts", "prompts", ok(_ref("PromptList"), "the prompts"),
                                   errors=(401,))},
        "/v1/prompts/{name}": {"get": _op("One prompt with its versions and labels", "prompts",
                                          ok(_ref("Prompt"), "the prompt"), errors=(400, 401, 404),
                                          params=[_path_param("name", "a prompt name")])},
        "/v1/feedback": {"post": _op("Outcomes of experiment requests (idempotent)", "experiments",
                                     ok(_ref("FeedbackResult"), "recorded"), body="FeedbackRequest",
                                     errors=(400, 401, 404))},
        "/v1/experiments": {"get": _op("Experiments", "experiments", ok(_ref("ExperimentList"), "the experiments"),
                                       errors=(401,))},
        "/v1/experiments/{name}": {"get": _op(
            "An experiment's report", "experiments", ok(_ref("ExperimentReport"), "the report"),
            errors=(400, 401, 404, 503), params=[_path_param("name", "an experiment name")])},
        "/v1/tabular/{model}/predict": {"post": _op(
            "Predictions of a tabular model (schema-checked rows, logged)", "tabular",
            ok(_ref("TabularPredictions"), "one prediction id per row"), body="TabularPredictRequest",
            errors=(400, 401, 404, 502, 504), params=[model_p])},
        "/v1/tabular/{model}/feedback": {"post": _op(
            "Ground-truth labels by prediction id", "tabular", ok(_ref("TabularFeedbackResult"), "recorded"),
            body="TabularFeedbackRequest", errors=(400, 401, 404, 409), params=[model_p])},
        "/v1/tabular/{model}/drift": {"get": _op(
            "Drift report of the logged window", "tabular", ok(_ref("DriftReport"), "the report"),
            errors=(400, 401, 404), params=[model_p, _query("window", "e.g. 1h, 24h, 7d")])},
        "/healthz": {"get": _op("Liveness", "operations", ok(_ref("Health"), "alive"), errors=(), security=False)},
        "/readyz": {"get": {**_op("Readiness", "operations", ok(_ref("Readiness"), "ready"), errors=(),
                                  security=False),
                            "responses": {"200": ok(_ref("Readiness"), "ready"),
                                          "503": ok(_ref("Readiness"), "not ready (policies not loaded)")}}},
        "/openapi.json": {"get": _op("This document", "operations",
                                     ok({"type": "object"}, "the OpenAPI document"), errors=(), security=False)},
        "/metrics": {"get": {"summary": "Prometheus metrics (admin key, or open mode on loopback)",
                             "tags": ["operations"], "responses": {
                                 "200": {"description": "text exposition format",
                                         "content": {"text/plain": {"schema": {"type": "string"}}}},
                                 **_errors(401, 403)}}},
        "/admin/reload": {"post": {**_op("Reload the policies now", "admin", ok(_ref("ReloadResult"), "reloaded"),
                                         errors=(401, 403)),
                                   "responses": {"200": ok(_ref("ReloadResult"), "reloaded"),
                                                 "422": ok(_ref("ReloadResult"), "refused; the old policies serve"),
                                                 **_errors(401, 403)}}},
        "/admin/status": {"get": _op("Readiness, ledger and backend status", "admin", ok(_ref("Status"), "status"),
                                     errors=(401, 403))},
        "/admin/cache/clear": {"post": _op("Clear the response cache (all or one scope)", "admin",
                                           ok(_ref("CacheCleared"), "cleared"), errors=(400, 401, 403, 409))},
        "/ui": {"get": {"summary": "The web console (HTML; see /ui/)", "tags": ["console"], "security": [],
                        "responses": {"302": {"description": "to /ui/"}}}},
        # The console's JSON calls (admin key, or its session cookie); its HTML pages are not listed.
        "/ui/api/overview": {"get": _op(
            "Requests, errors, latency, tokens and spend over time, by key, group, model, upstream", "console",
            ok(_ref("ConsoleOverview"), "the series and breakdowns"), errors=(400, 401, 403),
            params=_WINDOW + [_query("dim", "key, group, model or upstream"), _query("value", "that dimension's value")])},
        "/ui/api/requests": {"get": _op(
            "A page of ledger rows, newest first", "console", ok(_ref("ConsoleRequests"), "the rows"),
            errors=(400, 401, 403), params=_WINDOW + [
                _query(n, f"only rows with this {n}") for n in ("key", "model", "upstream", "check", "prompt",
                                                                 "variant", "request_id")] + [
                _query("status", "an HTTP status, or 2xx / 4xx / 5xx"),
                _query("action", "a check action", {"enum": ["allow", "flag", "redact", "block"]}),
                _query("page", "from 1", {"type": "integer", "minimum": 1}),
                _query("size", "rows per page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
            ])},
        "/ui/api/guardrails": {"get": _op(
            "What each check found over time", "console", ok(_ref("ConsoleGuardrails"), "per check"),
            errors=(400, 401, 403), params=_WINDOW)},
        "/ui/api/experiments/{name}": {"get": _op(
            "An experiment's report with its confidence sequences over time", "console",
            ok(_ref("ConsoleExperiment"), "the report and series"), errors=(400, 401, 403, 404),
            params=[_path_param("name", "an experiment name"), _query("bucket", "hour or day")])},
    }


_WINDOW = [_query("since", "start: a duration back from now (24h, 7d) or an ISO time"),
           _query("until", "end (default: now)"), _query("bucket", "chart bucket", {"enum": ["hour", "day"]})]


def document(version: str | None = None) -> dict[str, Any]:
    from gateway import __version__

    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "LLM gateway", "version": version or __version__,
                 "description": "The gateway's own HTTP API: the LLM dialects it serves (OpenAI chat, embeddings "
                                "and Responses; Anthropic Messages), prompts, experiments, tabular models and "
                                "operations. Every answer carries a `gateway` object; every error says what to fix."},
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}, {"x-api-key": []}],
        "tags": [{"name": t} for t in ("llm", "prompts", "experiments", "tabular", "operations", "admin", "console")],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a gateway key (`gateway hash-key`)"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key",
                              "description": "the same key, as Anthropic SDKs send it"}},
            "schemas": _schemas()},
    }
