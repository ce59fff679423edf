"""Type and range checks for request bodies: a wrong type is a 400 naming the field, before any
check or upstream sees the request.

The OpenAI parameters the gateway knows are checked with OpenAI's own types and ranges; parameters
it does not know are forwarded untouched (they may be newer than this code, or an upstream's own),
and `null` is accepted wherever OpenAI accepts it (as "not given").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.errors import InvalidRequest
from gateway.exchange import NO_OPTIONS, GatewayOptions

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
Check = Callable[[Any, str], None]


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"The request body is not valid JSON ({e}).") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def pop_gateway_options(body: dict[str, Any]) -> GatewayOptions:
    """Remove the `"gateway"` extension object (it never goes upstream) and validate it."""
    raw = body.pop("gateway", None)
    if raw is None:
        return NO_OPTIONS
    if not isinstance(raw, dict):
        raise InvalidRequest("`gateway` must be an object.", param="gateway")
    try:
        return GatewayOptions.model_validate(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(map(str, ("gateway", *first["loc"])))
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise InvalidRequest(f"`{field}`: {msg}.", param=field) from None


# ---- small typed checks ----------------------------------------------------------------------------
def _bad(where: str, what: str, got: Any) -> InvalidRequest:
    kind = "null" if got is None else "a boolean" if isinstance(got, bool) else type(got).__name__
    if kind in ("dict", "list", "str", "int", "float"):
        kind = {"dict": "an object", "list": "an array", "str": "a string", "int": "an integer",
                "float": "a number"}[kind]
    return InvalidRequest(f"`{where}` must be {what}; got {kind}.", param=where)


def string(where: str, v: Any, *, empty: bool = True) -> None:
    if not isinstance(v, str) or (not empty and not v):
        raise _bad(where, "a string" if empty else "a non-empty string", v)


def boolean(where: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise _bad(where, "true or false", v)


def number(lo: float | None = None, hi: float | None = None) -> Check:
    def check(v: Any, where: str) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(where, "a number" + _range(lo, hi), v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise InvalidRequest(f"`{where}` must be{_range(lo, hi)}; got {v}.", param=where)
    check.schema = _bounds({"type": "number"}, lo, hi)  # type: ignore[attr-defined]
    return check


def _bounds(schema: dict[str, Any], lo: float | None, hi: float | None) -> dict[str, Any]:
    return {**schema, **({"minimum": lo} if lo is not None else {}), **({"maximum": hi} if hi is not None else {})}


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any, where: str) -> None:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise _bad(where, "an integer" + _range(lo, hi), v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise InvalidRequest(f"`{where}` must be an integer{_range(lo, hi)}; got {v}.", param=where)
    check.schema = _bounds({"type": "integer"}, lo, hi)  # type: ignore[attr-defined]
    return check


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return f" of at most {hi}" if hi is not None else ""


def _string(v: Any, where: str) -> None:
    string(where, v)


def _bool(v: Any, where: str) -> None:
    boolean(where, v)


def one_of(*allowed: str) -> Check:
    def check(v: Any, where: str) -> None:
        if not isinstance(v, str) or v not in allowed:
            raise InvalidRequest(f"`{where}` must be one of {', '.join(allowed)}; got {_show(v)}.", param=where)
    check.schema = {"type": "string", "enum": list(allowed)}  # type: ignore[attr-defined]
    return check


def _show(v: Any) -> str:
    s = orjson.dumps(v).decode() if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _object(v: Any, where: str) -> None:
    if not isinstance(v, dict):
        raise _bad(where, "an object", v)


def _stop(v: Any, where: str) -> None:
    if isinstance(v, str):
        return
    if not isinstance(v, list) or not 1 <= len(v) <= 4 or not all(isinstance(s, str) for s in v):
        raise InvalidRequest(f"`{where}` must be a string or an array of 1 to 4 strings.", param=where)


def _logit_bias(v: Any, where: str) -> None:
    _object(v, where)
    for k, bias in v.items():
        if not k.lstrip("-").isdigit():
            raise InvalidRequest(f"`{where}` keys must be token ids (integers as strings); got {k!r}.", param=where)
        number(-100, 100)(bias, f"{where}.{k}")


def _string_map(v: Any, where: str) -> None:
    _object(v, where)
    for k, item in v.items():
        string(f"{where}.{k}", item)


def _stream_options(v: Any, where: str) -> None:
    _object(v, where)
    if v.get("include_usage") is not None:
        boolean(f"{where}.include_usage", v["include_usage"])


def _response_format(v: Any, where: str) -> None:
    _object(v, where)
    one_of("text", "json_object", "json_schema")(v.get("type"), f"{where}.type")
    if v["type"] == "json_schema":
        schema = v.get("json_schema")
        _object(schema, f"{where}.json_schema")
        string(f"{where}.json_schema.name", schema.get("name"), empty=False)
        if schema.get("schema") is not None:
            _object(schema["schema"], f"{where}.json_schema.schema")
        if schema.get("strict") is not None:
            boolean(f"{where}.json_schema.strict", schema["strict"])


def _tools(v: Any, where: str) -> None:
    if not isinstance(v, list):
        raise _bad(where, "an array of tools", v)
    for i, tool in enumerate(v):
        w = f"{where}[{i}]"
        _object(tool, w)
        string(f"{w}.type", tool.get("type"), empty=False)
        if tool["type"] != "function":
            continue  # other tool types (web search, custom) are the upstream's to judge
        fn = tool.get("function")
        _object(fn, f"{w}.function")
        string(f"{w}.function.name", fn.get("name"), empty=False)
        for key, check in (("description", _string), ("parameters", _object), ("strict", _bool)):
            if fn.get(key) is not None:
                check(fn[key], f"{w}.function.{key}")


def _tool_choice(v: Any, where: str) -> None:
    if isinstance(v, str):
        one_of("none", "auto", "required")(v, where)
        return
    _object(v, where)
    string(f"{where}.type", v.get("type"), empty=False)
    if v["type"] == "function":
        _object(v.get("function"), f"{where}.function")
        string(f"{where}.function.name", v["function"].get("name"), empty=False)


def _string_list(v: Any, where: str) -> None:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _bad(where, "an array of strings", v)


# What each check accepts, as JSON Schema: the OpenAPI document (gateway/openapi.py) is generated from
# these tables, so the document and the validation cannot drift apart (tests/test_openapi.py).
_STRINGS = {"type": "array", "items": {"type": "string"}}
_FUNCTION = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "minLength": 1}, "description": {"type": "string"},
    "parameters": {"type": "object"}, "strict": {"type": "boolean"}}}
_string.schema = {"type": "string"}  # type: ignore[attr-defined]
_bool.schema = {"type": "boolean"}  # type: ignore[attr-defined]
_object.schema = {"type": "object"}  # type: ignore[attr-defined]
_string_list.schema = _STRINGS  # type: ignore[attr-defined]
_stop.schema = {"oneOf": [{"type": "string"}, {**_STRINGS, "minItems": 1, "maxItems": 4}]}  # type: ignore[attr-defined]
_logit_bias.schema = {"type": "object", "propertyNames": {"pattern": "^-?[0-9]+$"},  # type: ignore[attr-defined]
                      "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}}
_string_map.schema = {"type": "object", "additionalProperties": {"type": "string"}}  # type: ignore[attr-defined]
_stream_options.schema = {"type": "object", "properties": {  # type: ignore[attr-defined]
    "include_usage": {"type": ["boolean", "null"]}}, "description": "only with `stream: true`"}
_response_format.schema = {"type": "object", "required": ["type"], "properties": {  # type: ignore[attr-defined]
    "type": {"enum": ["text", "json_object", "json_schema"]},
    "json_schema": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1}, "schema": {"type": ["object", "null"]},
        "strict": {"type": ["boolean", "null"]}, "description": {"type": "string"}}}}}
_tools.schema = {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {  # type: ignore[attr-defined]
    "type": {"type": "string", "minLength": 1}, "function": _FUNCTION},
    "description": "tools of type `function` need `function.name`; other types are the upstream's to judge"}}
_tool_choice.schema = {"oneOf": [{"enum": ["none", "auto", "required"]}, {  # type: ignore[attr-defined]
    "type": "object", "required": ["type"], "properties": {"type": {"type": "string", "minLength": 1},
                                                           "function": {"type": "object", "required": ["name"]}}}]}

# OpenAI Chat Completions parameters, with OpenAI's types and ranges.
CHAT_PARAMS: dict[str, Check] = {
    "temperature": number(0, 2), "top_p": number(0, 1), "n": integer(1, 128),
    "max_tokens": integer(1), "max_completion_tokens": integer(1),
    "presence_penalty": number(-2, 2), "frequency_penalty": number(-2, 2),
    "seed": integer(), "logprobs": _bool, "top_logprobs": integer(0, 20),
    "stream": _bool, "stream_options": _stream_options, "stop": _stop, "logit_bias": _logit_bias,
    "user": _string, "metadata": _string_map, "store": _bool, "parallel_tool_calls": _bool,
    "response_format": _response_format, "tools": _tools, "tool_choice": _tool_choice,
    "service_tier": _string, "reasoning_effort": _string, "modalities": _string_list, "verbosity": _string,
    "prediction": _object, "audio": _object, "web_search_options": _object,
}
EMBEDDING_PARAMS: dict[str, Check] = {
    "encoding_format": one_of("float", "base64"), "dimensions": integer(1), "user": _string,
}


def _params(body: dict[str, Any], table: dict[str, Check]) -> None:
    for key, check in table.items():
        if body.get(key) is not None:
            check(body[key], key)


def _model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a non-empty string.", param="model")


# ---- endpoints -------------------------------------------------------------------------------------
def validate_chat(body: dict[str, Any]) -> None:
    _model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("`messages` is required.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty array of message objects.", param="messages")
    for i, msg in enumerate(messages):
        _message(msg, f"messages[{i}]")
    _params(body, CHAT_PARAMS)
    if body.get("stream_options") and not body.get("stream"):
        raise InvalidRequest("`stream_options` is only allowed when `stream` is true.", param="stream_options")


def _message(msg: Any, where: str) -> None:
    if not isinstance(msg, dict):
        raise InvalidRequest(f"`{where}` must be an object with `role` and `content`.", param=where)
    role = msg.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(f"`{where}.role` must be one of {', '.join(_ROLES)}; got {_show(role)}.",
                             param=f"{where}.role")
    content = msg.get("content")
    if content is None:
        if role != "assistant":
            raise InvalidRequest(f"`{where}.content` is required for role {role!r}.", param=f"{where}.content")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _content_part(part, f"{where}.content[{j}]")
    elif not isinstance(content, str):
        raise InvalidRequest(f"`{where}.content` must be a string or an array of content parts.",
                             param=f"{where}.content")
    if msg.get("name") is not None:
        string(f"{where}.name", msg["name"])
    if role == "tool":
        string(f"{where}.tool_call_id", msg.get("tool_call_id"), empty=False)
    if msg.get("tool_calls") is not None:
        calls = msg["tool_calls"]
        if role != "assistant" or not isinstance(calls, list):
            raise InvalidRequest(f"`{where}.tool_calls` must be an array, on an assistant message.",
                                 param=f"{where}.tool_calls")
        for k, call in enumerate(calls):
            w = f"{where}.tool_calls[{k}]"
            _object(call, w)
            string(f"{w}.id", call.get("id"), empty=False)
            fn = call.get("function")
            _object(fn, f"{w}.function")
            string(f"{w}.function.name", fn.get("name"), empty=False)
            string(f"{w}.function.arguments", fn.get("arguments"))
    if msg.get("refusal") is not None:
        string(f"{where}.refusal", msg["refusal"])


# What _message and _content_part accept (for the OpenAPI document).
CONTENT_PART_SCHEMA = {"type": "object", "required": ["type"], "properties": {
    "type": {"type": "string", "description": "text, image_url, input_audio, file (others pass through)"},
    "text": {"type": "string"}, "image_url": {"oneOf": [{"type": "string", "minLength": 1}, {
        "type": "object", "required": ["url"], "properties": {"url": {"type": "string", "minLength": 1}}}]},
    "input_audio": {"type": "object"}, "file": {"type": "object"}}}
MESSAGE_SCHEMA = {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": list(_ROLES)},
    "content": {"description": "required except on assistant messages",
                "oneOf": [{"type": "string"}, {"type": "array", "items": CONTENT_PART_SCHEMA}, {"type": "null"}]},
    "name": {"type": ["string", "null"]}, "tool_call_id": {"type": "string", "minLength": 1,
                                                           "description": "required on role tool"},
    "tool_calls": {"type": ["array", "null"], "description": "assistant messages only", "items": {
        "type": "object", "required": ["id", "function"], "properties": {
            "id": {"type": "string", "minLength": 1}, "type": {"type": "string"},
            "function": {"type": "object", "required": ["name", "arguments"], "properties": {
                "name": {"type": "string", "minLength": 1}, "arguments": {"type": "string"}}}}}},
    "refusal": {"type": ["string", "null"]}}}
EMBEDDING_INPUT_SCHEMA = {"oneOf": [
    {"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2048},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2048},
    {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1}, "minItems": 1,
     "maxItems": 2048}]}


def _content_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise InvalidRequest(f"`{where}` must be an object with a `type`.", param=where)
    kind = part["type"]
    if kind == "text":
        string(f"{where}.text", part.get("text"))
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        string(f"{where}.image_url.url", url, empty=False)
    elif kind == "input_audio":
        _object(part.get("input_audio"), f"{where}.input_audio")
    elif kind == "file":
        _object(part.get("file"), f"{where}.file")


def validate_embeddings(body: dict[str, Any]) -> None:
    _model(body)
    inp = body.get("input")
    ok = isinstance(inp, str) or (
        isinstance(inp, list)
        and inp
        and (
            all(isinstance(x, str) for x in inp)
            or all(isinstance(x, int) and not isinstance(x, bool) for x in inp)
            or all(isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x)
                   for x in inp)
        )
    )
    if not ok:
        raise InvalidRequest(
            "`input` must be a string, an array of strings, or token arrays (non-empty).", param="input"
        )
    if isinstance(inp, list) and len(inp) > 2048:
        raise InvalidRequest("`input` may hold at most 2048 items.", param="input")
    _params(body, EMBEDDING_PARAMS)


# ---- shared by the ingress dialects (gateway/dialects/) --------------------------------------------
def untranslatable(where: str, what: str) -> InvalidRequest:
    """A field of another API that the gateway's internal (chat-completions) form cannot carry."""
    return InvalidRequest(f"`{where}`: {what} has no counterpart in the gateway's internal chat form, so it cannot "
                          "be passed to any upstream; remove it.", param=where)


def obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise InvalidRequest(f"`{where}` must be an object.", param=where)
    return v


def only(item: dict[str, Any], where: str, allowed: set[str], kind: str = "item", ignored: tuple[str, ...] = ()) -> None:
    """Every key of `item` is in `allowed` (or `ignored`: accepted hints without effect)."""
    for key in item:
        if key not in allowed and key not in ignored:
            raise InvalidRequest(f"`{where}.{key}` is not a field of this {kind} type.", param=f"{where}.{key}")


def api_fields(body: dict[str, Any], known: set[str], no_counterpart: dict[str, str], api: str) -> None:
    """Every top-level field of a request in another API is one this gateway translates: a field the
    internal form cannot carry is refused by name, and one the API does not have is a 400 too."""
    for key in body:
        if key in no_counterpart:
            raise untranslatable(key, no_counterpart[key])
        if key not in known:
            raise InvalidRequest(f"`{key}` is not a {api} field.", param=key)
