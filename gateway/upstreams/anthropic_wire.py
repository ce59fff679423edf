"""The internal chat form to Anthropic's Messages wire format and back, for the `anthropic` upstream
type. Pure functions, no I/O.

Requests: system messages become `system`, tool messages become `tool_result` blocks of a user turn,
consecutive turns of one role are merged (the Messages API wants them alternating), and a chat field
with no Messages counterpart is refused with a 400 naming it (the answer would otherwise silently
differ from what the client asked). Answers and streams come back as chat completions and chunks,
with Anthropic's usage mapped onto OpenAI's: prompt tokens include cache reads and cache writes,
which are also reported apart (`cached_tokens`, `cache_write_tokens`).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.wire import ChunkTranslator, Provider, add_turn, counter, data_url, message_text

# chat fields with no Messages API counterpart
_REFUSED = {
    "n": "several choices per request", "logprobs": "log probabilities", "top_logprobs": "log probabilities",
    "frequency_penalty": "frequency penalties", "presence_penalty": "presence penalties",
    "logit_bias": "logit biases", "seed": "seeded sampling", "audio": "audio output", "modalities": "audio output",
    "prediction": "predicted outputs", "web_search_options": "OpenAI web search", "functions": "legacy functions",
    "function_call": "legacy functions",
}
_HARMLESS = {"n": 1, "logprobs": False}  # refused values' harmless settings
# translated below, or accepted without effect because they cannot change the answer (stream_options:
# Anthropic streams always carry usage; store, metadata, service_tier, prompt_cache_key,
# safety_identifier, verbosity: OpenAI-side bookkeeping and hints)
_KNOWN = {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
          "stop", "user", "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
          "stream_options", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "verbosity"}
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
         "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}


ANTHROPIC = Provider("an Anthropic", _REFUSED, _HARMLESS, _KNOWN)
_refuse = ANTHROPIC.refuse


def _image(url: str, where: str) -> dict[str, Any]:
    if (inline := data_url(url)) is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return ANTHROPIC.parts(content, where, lambda t: {"type": "text", "text": t}, _image)


_EPHEMERAL = {"type": "ephemeral"}


def to_anthropic(body: dict[str, Any], model: str, default_max_tokens: int, cache: bool = False) -> dict[str, Any]:
    """The Messages API request for a chat body. `cache`: prompt-cache breakpoints after the system
    prompt, the tools and the conversation so far (the upstream's `prompt_caching: auto`)."""
    ANTHROPIC.check_fields(body)
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        add_turn(turns, role, blocks)

    for i, msg in enumerate(body.get("messages") or ()):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.append(message_text(msg.get("content")))
        elif role == "user":
            add("user", _blocks(msg.get("content"), where))
        elif role == "assistant":
            blocks = _blocks(msg.get("content"), where) if msg.get("content") else []
            for k, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                               "input": ANTHROPIC.arguments(fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments")})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": msg.get("tool_call_id"),
                          "content": message_text(msg.get("content"))}])
        else:
            raise _refuse(f"{where}.role", f"the role {role!r}")
    out: dict[str, Any] = {"model": model, "messages": turns,
                           "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens}
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    if body.get("temperature") is not None:
        if body["temperature"] > 1:
            raise InvalidRequest("`temperature` above 1 cannot be sent to an Anthropic upstream (its range is 0 to 1).",
                                 param="temperature")
        out["temperature"] = body["temperature"]
    for key in ("top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        out["stream"] = True
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        out["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(body["tools"])]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and body.get("tools"):
        out["tool_choice"] = choice
    fmt = body.get("response_format")
    if fmt and fmt.get("type") != "text":
        if fmt.get("type") != "json_schema":
            raise _refuse("response_format.type", "JSON mode without a schema")
        out.setdefault("output_config", {})["format"] = {"type": "json_schema",
                                                         "schema": (fmt.get("json_schema") or {}).get("schema")}
    if body.get("reasoning_effort"):
        if body["reasoning_effort"] not in ("low", "medium", "high"):
            raise _refuse("reasoning_effort", f"the effort {body['reasoning_effort']!r}")
        out.setdefault("output_config", {})["effort"] = body["reasoning_effort"]
    if cache:
        _breakpoints(out)
    return out


def _breakpoints(out: dict[str, Any]) -> None:
    """Three of the four cache breakpoints Anthropic allows: a prefix shorter than the model's minimum
    (1024 tokens for most) is simply not cached, at no cost."""
    if out.get("system"):
        out["system"] = [{"type": "text", "text": out["system"], "cache_control": _EPHEMERAL}]
    if out.get("tools"):
        out["tools"][-1] = {**out["tools"][-1], "cache_control": _EPHEMERAL}
    if out["messages"]:
        last = out["messages"][-1]["content"]
        last[-1] = {**last[-1], "cache_control": _EPHEMERAL}


def _tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _refuse(f"{where}.type", f"a tool of type {tool.get('type')!r}")
    fn = tool.get("function") or {}
    out = {"name": fn.get("name"), "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("strict") is not None:
        out["strict"] = fn["strict"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None and parallel is not False:
        return None
    if choice is None or choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise _refuse("tool_choice", f"the tool choice {choice!r}")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


# ---- answers -------------------------------------------------------------------------------------
def usage_to_openai(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage (input excludes cache reads and writes) as OpenAI usage (prompt includes them)."""
    n = counter(usage)
    read, written = n("cache_read_input_tokens"), n("cache_creation_input_tokens")
    prompt = n("input_tokens") + read + written
    return {"prompt_tokens": prompt, "completion_tokens": n("output_tokens"),
            "total_tokens": prompt + n("output_tokens"),
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written}}


def finish_reason(stop: str | None) -> str:
    return _STOP.get(stop or "end_turn", "stop")


def to_completion(msg: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A chat completion for an Anthropic `message`."""
    if msg.get("type") != "message" or not isinstance(msg.get("content"), list):
        raise UpstreamError("bad_response", "upstream answer is not an Anthropic message")
    text, calls = [], []
    for block in msg["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id") or "", "type": "function", "function": {
                "name": block.get("name") or "", "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        # thinking / redacted_thinking blocks are never asked for (to_anthropic sends no `thinking`)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return {"id": msg.get("id") or request_id, "object": "chat.completion", "created": 0,
            "model": msg.get("model") or "", "choices": [{"index": 0, "message": message,
                                                           "finish_reason": finish_reason(msg.get("stop_reason"))}],
            "usage": usage_to_openai(msg.get("usage") or {})}


class StreamTranslator(ChunkTranslator):
    """Anthropic stream events in, chat-completion chunks out (each event gives zero or more); the id
    and model come with message_start."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, Any] = {}
        self.tools = -1  # chat tool index of the open tool_use block

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.base.update(id=msg.get("id") or "", model=msg.get("model") or "")
            self.usage.update(msg.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.tools += 1
                return [self._chunk({"tool_calls": [{"index": self.tools, "id": block.get("id") or "",
                                                     "type": "function", "function": {
                                                         "name": block.get("name") or "", "arguments": ""}}]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text") or ""})]
            if delta.get("type") == "input_json_delta":
                return [self._chunk({"tool_calls": [{"index": self.tools,
                                                     "function": {"arguments": delta.get("partial_json") or ""}}]})]
            return []  # thinking / signature / citations deltas: never asked for
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            stop = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason(stop))]
        if kind == "message_stop":
            self.done = True
            return [self._usage_chunk(usage_to_openai(self.usage))]
        if kind == "error":
            err = event.get("error") or {}
            return [{"error": {"message": err.get("message") or "upstream stream error",
                               "type": err.get("type") or "api_error"}}]
        return []  # ping, content_block_stop, and event types added later
