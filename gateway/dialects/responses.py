"""OpenAI Responses (`POST /v1/responses`) in and out of the internal chat form.

Like the Messages dialect, `to_chat` is strict: a field either has an exact chat-completions
meaning or is refused with a 400 that names it (`input[3].content[0].type`). The provider-side
features of the Responses API (built-in tools, conversations, background mode, stored prompts,
reasoning summaries) have no counterpart on a chat upstream and are refused by name. A
`previous_response_id` continues a stored conversation (stored_responses.py): its history sits
between this request's `instructions` (which are not carried over, as at OpenAI) and its `input`.
The stream form of a response is in responses_stream.py.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.errors import InvalidRequest
from gateway.validation import api_fields, boolean, integer, number, obj, one_of, only, string, untranslatable

NAME = "responses"  # the ledger's `endpoint` and the metrics' label for this dialect

_TOP = {
    "model", "input", "instructions", "previous_response_id", "store", "stream", "stream_options", "temperature",
    "top_p", "max_output_tokens", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning", "metadata",
    "user", "safety_identifier", "prompt_cache_key", "truncation", "include", "service_tier", "max_tool_calls",
    "background", "top_logprobs",
}
# Responses API features that run at the provider: refused by name (nothing here could do them).
_NO_COUNTERPART = {
    "conversation": "conversations stored by the provider (use previous_response_id)",
    "prompt": "prompt templates stored by OpenAI (the gateway's own are `gateway.prompt`)",
    "context_management": "server-side context compaction", "moderation": "provider moderation",
    "prompt_cache_options": "provider prompt-cache options", "prompt_cache_retention": "provider prompt-cache retention",
    "background_options": "background mode", "access_programs": "provider access programs", "image": "image options",
}
# `include` values that ask for nothing this gateway could ever produce, so they change nothing
# (agent SDKs send the first with `store: false`): accepted. Any other value is refused.
_HARMLESS_INCLUDES = {"reasoning.encrypted_content"}


_refuse = untranslatable
_obj = obj


def _only(item: dict[str, Any], where: str, allowed: set[str]) -> None:
    only(item, where, allowed, "item")


# ---- request -----------------------------------------------------------------------------------
def to_chat(body: dict[str, Any], history: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The chat-completions body for a Responses request (its `gateway` object already popped), and
    the conversation to store with its answer: `history` (from `previous_response_id`) plus this input."""
    api_fields(body, _TOP, _NO_COUNTERPART, "Responses API")
    model = body.get("model")
    string("model", model, empty=False)
    out: dict[str, Any] = {"model": model}
    turn = _input(body.get("input"), history)
    conversation = [*history, *turn]
    system = []
    if body.get("instructions") is not None:
        string("instructions", body["instructions"])
        if body["instructions"]:
            system = [{"role": "system", "content": body["instructions"]}]
    out["messages"] = [*system, *conversation]
    for key in ("stream", "store", "parallel_tool_calls", "background"):
        if body.get(key) is not None:
            boolean(key, body[key])
    if body.get("background"):
        raise _refuse("background", "background mode (responses run and are polled at the provider)")
    if body.get("stream"):
        out["stream"] = True
    if body.get("stream_options") is not None:
        for key in _obj(body["stream_options"], "stream_options"):
            if key != "include_obfuscation":  # padding against length side channels: there is none to add
                raise InvalidRequest(f"`stream_options.{key}` is not a stream option.", param=f"stream_options.{key}")
    for key, check in (("temperature", number(0, 2)), ("top_p", number(0, 1))):
        if body.get(key) is not None:
            check(body[key], key)
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        integer(1)(body["max_output_tokens"], "max_output_tokens")
        out["max_tokens"] = int(body["max_output_tokens"])
    if body.get("max_tool_calls") is not None:  # a cap on built-in tool calls; none can be asked for here
        integer(1)(body["max_tool_calls"], "max_tool_calls")
    if body.get("top_logprobs"):
        raise _refuse("top_logprobs", "log probabilities in a Responses answer")
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        if body.get(key) is not None:
            string(key, body[key])
            out[key] = body[key]  # chat completions has the same three fields
    if body.get("service_tier") is not None:
        one_of("auto", "default", "flex", "scale", "priority")(body["service_tier"], "service_tier")
        if body["service_tier"] != "auto":
            out["service_tier"] = body["service_tier"]
    if body.get("truncation") is not None:
        one_of("auto", "disabled")(body["truncation"], "truncation")
        if body["truncation"] == "auto":
            raise _refuse("truncation", "dropping the oldest items of a conversation that is too long (`auto`)")
    if body.get("include"):
        inc = body["include"]
        if not isinstance(inc, list) or not all(isinstance(v, str) for v in inc):
            raise InvalidRequest("`include` must be an array of strings.", param="include")
        for i, value in enumerate(inc):
            if value not in _HARMLESS_INCLUDES:
                raise _refuse(f"include[{i}]", f"including {value!r}")
    if body.get("metadata") is not None:
        meta = _obj(body["metadata"], "metadata")
        if len(meta) > 16 or not all(isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in meta.items()):
            raise InvalidRequest("`metadata` must hold at most 16 string values (keys up to 64 characters, values "
                                 "up to 512).", param="metadata")
    if body.get("text") is not None:
        out.update(_text(_obj(body["text"], "text")))
    if body.get("reasoning") is not None:
        out.update(_reasoning(_obj(body["reasoning"], "reasoning")))
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("parallel_tool_calls") is not None and out.get("tools"):
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    return out, conversation


def _input(raw: Any, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("`input` must be a string or a non-empty array of input items.", param="input")
    calls = {c["id"] for m in history for c in m.get("tool_calls") or ()}
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        item = _obj(item, where)
        kind = item.get("type", "message")  # an easy input message has a role and no type
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            _only(item, where, {"type", "id", "call_id", "name", "arguments", "status", "namespace"})
            for field in ("call_id", "name"):
                string(f"{where}.{field}", item.get(field), empty=False)
            string(f"{where}.arguments", item.get("arguments"))
            if item.get("namespace") is not None:
                raise _refuse(f"{where}.namespace", "a namespaced tool call")
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            calls.add(item["call_id"])
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":  # calls of one turn belong to its message
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            _only(item, where, {"type", "id", "call_id", "output", "status"})
            string(f"{where}.call_id", item.get("call_id"), empty=False)
            if item["call_id"] not in calls:
                raise InvalidRequest(f"`{where}.call_id`: no earlier function_call has call_id {item['call_id']!r} "
                                     "(a tool's output must follow the call it answers).", param=f"{where}.call_id")
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": _tool_output(item.get("output"), where)})
        elif kind == "item_reference":
            raise _refuse(f"{where}.type", "an item reference (continue a stored response with previous_response_id)")
        else:
            raise _refuse(f"{where}.type", f"an input item of type {kind!r}")
    return out


_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    _only(item, where, {"type", "role", "content", "id", "status", "phase"})
    role = item.get("role")
    one_of(*_ROLES)(role, f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": _ROLES[role], "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"`{where}.content` must be a string or an array of content parts.",
                             param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        w = f"{where}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidRequest(f"`{w}` must be a content part with a `type`.", param=w)
        kind = part["type"]
        if role == "assistant" and kind in ("output_text", "refusal"):
            field = "text" if kind == "output_text" else "refusal"
            _only(part, w, {"type", field, "annotations", "logprobs"})
            string(f"{w}.{field}", part.get(field))
            parts.append({"type": "text", "text": part[field]})
        elif kind == "input_text" and role != "assistant":
            _only(part, w, {"type", "text"})
            string(f"{w}.text", part.get("text"))
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and role == "user":
            parts.append(_image(part, w))
        elif kind in ("output_text", "refusal", "input_text", "input_image"):
            raise InvalidRequest(f"`{w}.type`: an {kind} part cannot be in a {role} message.", param=f"{w}.type")
        else:
            raise _refuse(f"{w}.type", f"a content part of type {kind!r}")
    if role == "assistant" or role in ("system", "developer"):
        # chat assistant and system messages are plain text
        return {"role": _ROLES[role], "content": "".join(p["text"] for p in parts)}
    return {"role": "user", "content": parts}


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    _only(part, where, {"type", "image_url", "file_id", "detail"})
    if part.get("file_id") is not None:
        raise _refuse(f"{where}.file_id", "an image uploaded to OpenAI's file store")
    string(f"{where}.image_url", part.get("image_url"), empty=False)
    url: dict[str, Any] = {"url": part["image_url"]}
    if part.get("detail") is not None:
        one_of("auto", "low", "high")(part["detail"], f"{where}.detail")
        url["detail"] = part["detail"]
    return {"type": "image_url", "image_url": url}


def _tool_output(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise InvalidRequest(f"`{where}.output` must be a string or an array of input_text parts.",
                             param=f"{where}.output")
    texts = []
    for k, part in enumerate(output):
        w = f"{where}.output[{k}]"
        if not isinstance(part, dict) or part.get("type") != "input_text":
            raise _refuse(f"{w}.type", "a tool output that is not text")
        string(f"{w}.text", part.get("text"))
        texts.append(part["text"])
    return "\n".join(texts)


def _text(text: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in text:
        if key not in ("format", "verbosity"):
            raise InvalidRequest(f"`text.{key}` is not a text option.", param=f"text.{key}")
    if text.get("verbosity") is not None:
        one_of("low", "medium", "high")(text["verbosity"], "text.verbosity")
        out["verbosity"] = text["verbosity"]
    if text.get("format") is None:
        return out
    fmt = _obj(text["format"], "text.format")
    kind = fmt.get("type")
    one_of("text", "json_object", "json_schema")(kind, "text.format.type")
    if kind == "json_object":
        _only(fmt, "text.format", {"type"})
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        _only(fmt, "text.format", {"type", "name", "schema", "strict", "description"})
        string("text.format.name", fmt.get("name"), empty=False)
        schema: dict[str, Any] = {"name": fmt["name"], "schema": _obj(fmt.get("schema"), "text.format.schema")}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        _only(fmt, "text.format", {"type"})
    return out


def _reasoning(reasoning: dict[str, Any]) -> dict[str, Any]:
    for key in reasoning:
        if key not in ("effort", "summary", "generate_summary"):
            raise InvalidRequest(f"`reasoning.{key}` is not a reasoning option.", param=f"reasoning.{key}")
    for key in ("summary", "generate_summary"):
        if reasoning.get(key) is not None:
            raise _refuse(f"reasoning.{key}", "reasoning summaries")
    if reasoning.get("effort") is None:
        return {}
    one_of("none", "minimal", "low", "medium", "high", "xhigh")(reasoning["effort"], "reasoning.effort")
    return {"reasoning_effort": reasoning["effort"]}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be an array of tools.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        tool = _obj(tool, where)
        if tool.get("type") != "function":
            raise _refuse(f"{where}.type", f"the built-in tool {tool.get('type')!r}")
        _only(tool, where, {"type", "name", "description", "parameters", "strict", "defer_loading"})
        string(f"{where}.name", tool.get("name"), empty=False)
        fn: dict[str, Any] = {"name": tool["name"]}
        if tool.get("parameters") is not None:
            fn["parameters"] = _obj(tool["parameters"], f"{where}.parameters")
        if tool.get("description") is not None:
            string(f"{where}.description", tool["description"])
            fn["description"] = tool["description"]
        if tool.get("strict") is not None:
            boolean(f"{where}.strict", tool["strict"])
            fn["strict"] = tool["strict"]
        if tool.get("defer_loading"):
            raise _refuse(f"{where}.defer_loading", "deferred tool loading (tool search)")
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        one_of("none", "auto", "required")(choice, "tool_choice")
        return choice
    choice = _obj(choice, "tool_choice")
    if choice.get("type") != "function":
        raise _refuse("tool_choice.type", f"a tool choice of type {choice.get('type')!r}")
    _only(choice, "tool_choice", {"type", "name"})
    string("tool_choice.name", choice.get("name"), empty=False)
    return {"type": "function", "function": {"name": choice["name"]}}


# ---- response ----------------------------------------------------------------------------------
def response_id(request_id: str) -> str:
    return "resp_" + request_id.removeprefix("gw-")


def item_id(request_id: str, kind: str, index: int) -> str:
    """Output item ids, stable per response (a stream's items and its final response agree)."""
    return f"{kind}_{request_id.removeprefix('gw-')}{index:02d}"


def usage_fields(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.input,
            "input_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": 0},
            "output_tokens": usage.output, "output_tokens_details": {"reasoning_tokens": usage.reasoning},
            "total_tokens": usage.input + usage.output}


def status_of(finish: str | None) -> tuple[str, dict[str, str] | None]:
    """The response's status and incomplete_details for a chat finish reason."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def skeleton(ex, status: str, model: str | None) -> dict[str, Any]:
    """A response object as the request described it (the fields OpenAI echoes), without output."""
    req = ex.client_body or {}
    tools = []
    for t in req.get("tools") or ():
        tools.append({"type": "function", "name": t.get("name"), "description": t.get("description"),
                      "parameters": t.get("parameters"), "strict": t.get("strict", True)})
    choice = req.get("tool_choice", "auto")
    text = dict(req.get("text") or {})
    text.setdefault("format", {"type": "text"})
    return {
        "id": response_id(ex.id), "object": "response", "created_at": int(ex.wall_start), "status": status,
        "background": False, "error": None, "incomplete_details": None, "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"), "max_tool_calls": req.get("max_tool_calls"),
        "model": model or ex.model, "output": [], "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": {"effort": (req.get("reasoning") or {}).get("effort"), "summary": None},
        "safety_identifier": req.get("safety_identifier"), "prompt_cache_key": req.get("prompt_cache_key"),
        "service_tier": req.get("service_tier", "auto"), "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0), "text": text,
        "tool_choice": choice if isinstance(choice, str) else {"type": "function", "name": choice.get("name")},
        "tools": tools, "top_logprobs": 0, "top_p": req.get("top_p", 1.0), "truncation": "disabled",
        "usage": None, "user": req.get("user"), "metadata": req.get("metadata") or {},
    }


def message_item(ex, index: int, text: str, refusal: bool, status: str) -> dict[str, Any]:
    part = ({"type": "refusal", "refusal": text} if refusal
            else {"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    return {"type": "message", "id": item_id(ex.id, "msg", index), "status": status, "role": "assistant",
            "content": [part]}


def call_item(ex, index: int, call: dict[str, Any], status: str) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"type": "function_call", "id": item_id(ex.id, "fc", index), "call_id": call.get("id") or "",
            "name": fn.get("name") or "", "arguments": fn.get("arguments") or "", "status": status}


def from_chat(data: dict[str, Any], ex) -> dict[str, Any]:
    """A `response` object for a chat completion (choice 0: the Responses API has no `n`)."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    status, incomplete = status_of(choice.get("finish_reason"))
    out = skeleton(ex, status, data.get("model"))
    output = out["output"]
    if message.get("content"):
        output.append(message_item(ex, 0, message["content"], False, status))
    elif message.get("refusal"):
        output.append(message_item(ex, 0, message["refusal"], True, status))
    for call in message.get("tool_calls") or ():
        output.append(call_item(ex, len(output), call, "completed"))
    out["incomplete_details"] = incomplete
    out["completed_at"] = int(time.time()) if status == "completed" else None
    out["usage"] = usage_fields(ex.usage)
    if "gateway" in data:
        out["gateway"] = data["gateway"]
    return out


def history_turn(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's output as the chat messages a continuation puts in the conversation."""
    text, calls = "", []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                text += part.get("text") or part.get("refusal") or ""
        elif item.get("type") == "function_call":
            calls.append({"id": item["call_id"], "type": "function",
                          "function": {"name": item["name"], "arguments": item["arguments"]}})
    if not text and not calls:
        return []
    return [{"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}]


def stream_failure(ex, message: str, kind: str) -> dict[str, Any]:
    """The response of a stream that failed after its headers were sent (`response.failed`)."""
    out = skeleton(ex, "failed", None)
    out["error"] = {"code": "server_error", "message": message}
    out["usage"] = usage_fields(ex.usage)
    return out


def input_items(body: dict[str, Any], request_id: str) -> list[dict[str, Any]]:
    """A request's `input` as the items `GET /v1/responses/{id}/input_items` lists, each with an id."""
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or ())
    out = []
    for i, item in enumerate(items):
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message":
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            item.setdefault("status", "completed")
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(kind, "item")
        item.setdefault("id", f"{prefix}_{request_id.removeprefix('gw-')}in{i:02d}")
        out.append(item)
    return out
