"""Anthropic Messages (`POST /v1/messages`) in and out of the internal chat form.

`to_chat` is strict: every field either has an exact chat-completions meaning or is refused with a
400 naming it by its Anthropic path (`messages[2].content[0].type`), so nothing a client sent is
dropped unseen. Two hints are accepted without effect, because they cannot change an answer:
`cache_control` (prompt-caching breakpoints: OpenAI-style servers cache prefixes on their own; an
`anthropic` upstream then caches nothing, since the breakpoints do not survive the chat form) and
`service_tier` ("auto"/"standard_only": there is one tier). `from_chat` renders a completion
as an Anthropic `message`; the stream form is in anthropic_stream.py.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError, InvalidRequest, UpstreamFailure
from gateway.validation import api_fields, integer, number, obj, one_of, only, string, untranslatable

NAME = "messages"  # the ledger's `endpoint` and the metrics' label for this dialect

_TOP = {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "output_config", "cache_control"}
# Anthropic features with no counterpart in the internal chat form: refused by name.
_NO_COUNTERPART = {
    "container": "code-execution containers", "mcp_servers": "MCP servers run by the provider",
    "context_management": "server-side context editing", "inference_geo": "inference regions",
    "speed": "speed modes", "diagnostics": "provider diagnostics",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}


_refuse = untranslatable
_obj = obj


def _only(item: dict[str, Any], where: str, allowed: set[str]) -> None:
    only(item, where, allowed, "block", ignored=("cache_control",))


# ---- request -----------------------------------------------------------------------------------
def to_chat(body: dict[str, Any], *, counting: bool = False) -> dict[str, Any]:
    """The chat-completions body for an Anthropic Messages request (its `gateway` object already popped).
    `counting`: a `count_tokens` request, which has no `max_tokens` and may not stream."""
    api_fields(body, _TOP, _NO_COUNTERPART, "Messages API")
    model = body.get("model")
    string("model", model, empty=False)
    out: dict[str, Any] = {"model": model}
    if counting:
        for key in ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata"):
            if key in body:
                raise InvalidRequest(f"`{key}` is not a count_tokens field.", param=key)
    else:
        if body.get("max_tokens") is None:
            raise InvalidRequest("`max_tokens` is required.", param="max_tokens")
        integer(1)(body["max_tokens"], "max_tokens")
        out["max_tokens"] = int(body["max_tokens"])
    messages = _system(body.get("system"))
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("`messages` must be a non-empty array of messages.", param="messages")
    seen_calls: set[str] = set()  # tool_use ids so far: a tool_result must answer one of them
    for i, msg in enumerate(raw):
        messages.extend(_message(msg, f"messages[{i}]", seen_calls))
    out["messages"] = messages
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise InvalidRequest("`stream` must be true or false.", param="stream")
        out["stream"] = body["stream"]
    for key, check in (("temperature", number(0, 1)), ("top_p", number(0, 1)), ("top_k", integer(0))):
        if body.get(key) is not None:
            check(body[key], key)
            out[key] = body[key]  # top_k: vLLM, TGI, Ollama and llama.cpp take it as an extra parameter
    if body.get("stop_sequences") is not None:
        stops = body["stop_sequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("`stop_sequences` must be an array of strings.", param="stop_sequences")
        if stops:
            out["stop"] = stops
    if body.get("metadata") is not None:
        meta = _obj(body["metadata"], "metadata")
        for key in meta:
            if key != "user_id":
                raise InvalidRequest(f"`metadata.{key}`: only `user_id` is a Messages API metadata field.",
                                     param=f"metadata.{key}")
        if meta.get("user_id") is not None:
            string("metadata.user_id", meta["user_id"])
            out["user"] = meta["user_id"]
    if body.get("service_tier") is not None:
        one_of("auto", "standard_only")(body["service_tier"], "service_tier")
    if body.get("thinking") is not None:
        thinking = _obj(body["thinking"], "thinking")
        if thinking.get("type") != "disabled":
            raise _refuse("thinking", "extended thinking")
    if body.get("output_config") is not None:
        out.update(_output_config(_obj(body["output_config"], "output_config")))
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out.update(_tool_choice(_obj(body["tool_choice"], "tool_choice")))
    return out


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise InvalidRequest("`system` must be a string or an array of text blocks.", param="system")
    texts = []
    for j, block in enumerate(system):
        where = f"system[{j}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"`{where}` must be a text block.", param=where)
        _only(block, where, {"type", "text", "citations"})
        string(f"{where}.text", block.get("text"))
        texts.append(block["text"])
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def _message(msg: Any, where: str, seen_calls: set[str]) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: tool results become `tool` messages (which OpenAI wants
    right after the assistant's calls), ahead of the rest of the user turn."""
    msg = _obj(msg, where)
    for key in msg:
        if key not in ("role", "content"):
            raise InvalidRequest(f"`{where}.{key}` is not a message field.", param=f"{where}.{key}")
    role = msg.get("role")
    one_of("user", "assistant")(role, f"{where}.role")
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"`{where}.content` must be a string or an array of content blocks.",
                             param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        w = f"{where}.content[{j}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"`{w}` must be a content block with a `type`.", param=w)
        kind = block["type"]
        if kind == "text":
            _only(block, w, {"type", "text", "citations"})
            string(f"{w}.text", block.get("text"))
            if block.get("citations"):
                raise _refuse(f"{w}.citations", "citations inside a text block")
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role == "user":
            parts.append(_image(block, w))
        elif kind == "tool_use" and role == "assistant":
            _only(block, w, {"type", "id", "name", "input"})
            string(f"{w}.id", block.get("id"), empty=False)
            string(f"{w}.name", block.get("name"), empty=False)
            seen_calls.add(block["id"])
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": orjson.dumps(_obj(block.get("input", {}), f"{w}.input")).decode()}})
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, w))
            if block["tool_use_id"] not in seen_calls:
                raise InvalidRequest(f"`{w}.tool_use_id`: no earlier tool_use block has id {block['tool_use_id']!r} "
                                     "(a tool_result must answer a call of the assistant turn before it).",
                                     param=f"{w}.tool_use_id")
        elif kind in ("image", "tool_use", "tool_result"):
            raise InvalidRequest(f"`{w}.type`: a {kind} block cannot be in a {role} message.", param=f"{w}.type")
        else:
            raise _refuse(f"{w}.type", f"a {kind!r} block")
    out: list[dict[str, Any]] = list(results)
    if role == "assistant":
        text = "".join(p["text"] for p in parts)
        if calls or parts:
            out.append({"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})})
    elif parts:
        out.append({"role": "user", "content": parts})
    if not out:
        raise InvalidRequest(f"`{where}.content` is empty.", param=f"{where}.content")
    return out


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    _only(block, where, {"type", "source"})
    source = _obj(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        string(f"{where}.source.media_type", source.get("media_type"), empty=False)
        string(f"{where}.source.data", source.get("data"), empty=False)
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif kind == "url":
        string(f"{where}.source.url", source.get("url"), empty=False)
        url = source["url"]
    else:
        raise _refuse(f"{where}.source.type", f"an image source of type {kind!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    _only(block, where, {"type", "tool_use_id", "content", "is_error"})
    string(f"{where}.tool_use_id", block.get("tool_use_id"), empty=False)
    content = block.get("content", "")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            w = f"{where}.content[{k}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _refuse(f"{w}.type", "a tool result that is not text")
            string(f"{w}.text", part.get("text"))
            texts.append(part["text"])
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise InvalidRequest(f"`{where}.content` must be a string or an array of text blocks.",
                             param=f"{where}.content")
    if block.get("is_error"):
        # Chat has no error flag on a tool message; the model is told in words, as Anthropic's own
        # OpenAI compatibility layer does.
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be an array of tools.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        tool = _obj(tool, where)
        if tool.get("type") not in (None, "custom"):
            raise _refuse(f"{where}.type", f"the server tool {tool.get('type')!r}")
        _only(tool, where, {"type", "name", "description", "input_schema", "strict", "eager_input_streaming"})
        string(f"{where}.name", tool.get("name"), empty=False)
        fn: dict[str, Any] = {"name": tool["name"], "parameters": _obj(tool.get("input_schema"), f"{where}.input_schema")}
        if tool.get("description") is not None:
            string(f"{where}.description", tool["description"])
            fn["description"] = tool["description"]
        if tool.get("strict") is not None:
            fn["strict"] = bool(tool["strict"])
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    one_of("auto", "any", "tool", "none")(kind, "tool_choice.type")
    out: dict[str, Any] = {"tool_choice": {"auto": "auto", "any": "required", "none": "none"}.get(kind)}
    if kind == "tool":
        string("tool_choice.name", choice.get("name"), empty=False)
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out


def _output_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in cfg:
        if key not in ("format", "effort"):
            raise InvalidRequest(f"`output_config.{key}` is not an output_config field.", param=f"output_config.{key}")
    if cfg.get("format") is not None:
        fmt = _obj(cfg["format"], "output_config.format")
        one_of("json_schema")(fmt.get("type"), "output_config.format.type")
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "strict": True, "schema": _obj(fmt.get("schema"), "output_config.format.schema")}}
    if cfg.get("effort") is not None:
        one_of("low", "medium", "high")(cfg["effort"], "output_config.effort")  # the levels OpenAI has too
        out["reasoning_effort"] = cfg["effort"]
    return out


# ---- response ----------------------------------------------------------------------------------
def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("gw-")


def usage_fields(usage: Any) -> dict[str, int]:
    """Anthropic usage from the gateway's `Usage`: input excludes cache reads, which are their own field."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    return {"input_tokens": max(0, usage.input - usage.cached), "output_tokens": usage.output,
            "cache_read_input_tokens": usage.cached, "cache_creation_input_tokens": 0}


def stop_reason(finish: str | None) -> str | None:
    return _STOP_REASONS.get(finish, "end_turn") if finish else None


def tool_input(arguments: str, name: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic clients expect; an upstream that generated
    something else fails the request (a client would crash on it) rather than getting `{}`."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamFailure(f"The upstream's call of tool {name!r} has arguments that are not a JSON object, "
                              "so it cannot be given as a tool_use block.", code="bad_response")
    return value


def from_chat(data: dict[str, Any], ex) -> dict[str, Any]:
    """An Anthropic `message` for a chat completion (choice 0: the Messages API has no `n`)."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
                        "input": tool_input(fn.get("arguments") or "", fn.get("name") or "")})
    out = {"id": message_id(ex.id), "type": "message", "role": "assistant", "model": data.get("model") or ex.model,
           "content": content, "stop_reason": stop_reason(choice.get("finish_reason") or "stop"),
           "stop_sequence": None, "usage": usage_fields(ex.usage)}
    if "gateway" in data:
        out["gateway"] = data["gateway"]
    return out


# ---- errors ------------------------------------------------------------------------------------
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(err: GatewayError) -> dict[str, Any]:
    """Anthropic's error shape; the gateway's own type, code and param ride along for the curious."""
    error: dict[str, Any] = {"type": error_type(err.status), "message": err.message}
    if err.type != error["type"]:
        error["gateway_type"] = err.type
    for key in ("code", "param"):
        if getattr(err, key) is not None:
            error[key] = getattr(err, key)
    error.update(err.extra)
    return {"type": "error", "error": error}


def stream_error(message: str, kind: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "overloaded_error" if kind == "http_529" else "api_error",
                                       "message": message, "code": kind}}

