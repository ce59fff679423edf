"""Shape checks for OpenAI requests: enough to give a clear 400 naming the field, no more.

Everything not checked here is forwarded untouched, so new OpenAI parameters keep working.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from gateway.errors import InvalidRequest
from gateway.exchange import NO_OPTIONS, GatewayOptions

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


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


def _model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a non-empty string.", param="model")


def validate_chat(body: dict[str, Any]) -> None:
    _model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("`messages` is required.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty array of message objects.", param="messages")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest(f"`{where}` must be an object with `role` and `content`.", param=where)
        role = msg.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"`{where}.role` must be one of {', '.join(sorted(_ROLES))}; got {role!r}.", param=f"{where}.role"
            )
        content = msg.get("content")
        if content is None:
            if role != "assistant":
                raise InvalidRequest(f"`{where}.content` is required for role {role!r}.", param=f"{where}.content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise InvalidRequest(
                        f"`{where}.content[{j}]` must be an object with a `type`.", param=f"{where}.content[{j}]"
                    )
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise InvalidRequest(
                        f"`{where}.content[{j}].text` must be a string.", param=f"{where}.content[{j}].text"
                    )
        elif not isinstance(content, str):
            raise InvalidRequest(
                f"`{where}.content` must be a string or an array of content parts.", param=f"{where}.content"
            )
        if "name" in msg and not isinstance(msg["name"], str):
            raise InvalidRequest(f"`{where}.name` must be a string.", param=f"{where}.name")
    _typed(body, "stream", bool)
    _typed(body, "stream_options", dict)
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128):
        raise InvalidRequest("`n` must be an integer from 1 to 128.", param="n")
    if body.get("stream_options") and not body.get("stream"):
        raise InvalidRequest("`stream_options` is only allowed when `stream` is true.", param="stream_options")


def validate_embeddings(body: dict[str, Any]) -> None:
    _model(body)
    inp = body.get("input")
    ok = isinstance(inp, str) or (
        isinstance(inp, list)
        and inp
        and (
            all(isinstance(x, str) for x in inp)
            or all(isinstance(x, int) for x in inp)
            or all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in inp)
        )
    )
    if not ok:
        raise InvalidRequest(
            "`input` must be a string, an array of strings, or token arrays (non-empty).", param="input"
        )
    if isinstance(inp, list) and len(inp) > 2048:
        raise InvalidRequest("`input` may hold at most 2048 items.", param="input")


def _typed(body: dict[str, Any], key: str, kind: type) -> None:
    if key in body and body[key] is not None and not isinstance(body[key], kind):
        raise InvalidRequest(f"`{key}` must be a {kind.__name__}.", param=key)
