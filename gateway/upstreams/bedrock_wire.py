"""The internal chat form to Amazon Bedrock's Converse wire format and back, for the `bedrock`
upstream type. Pure functions, no I/O (signing and the binary event stream are in bedrock.py).

Requests: system messages become `system`, tool calls `toolUse` blocks, tool messages `toolResult`
blocks of a user turn, consecutive turns of one role merged (Converse wants them alternating),
sampling in `inferenceConfig`. Answers: `output.message` as a chat completion, stop reasons mapped
(a guardrail intervention is `content_filter`), usage with prompt-cache reads and writes (Converse
reports them beside `inputTokens`, which excludes them, as Anthropic's API does).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.upstreams.base import UpstreamError
from gateway.upstreams.wire import ChunkTranslator, Provider, add_turn, counter, data_url, message_text

_REFUSED = {
    "n": "several choices per request", "logprobs": "log probabilities", "top_logprobs": "log probabilities",
    "frequency_penalty": "frequency penalties", "presence_penalty": "presence penalties",
    "logit_bias": "logit biases", "seed": "seeded sampling", "audio": "audio output", "modalities": "audio output",
    "prediction": "predicted outputs", "web_search_options": "OpenAI web search", "functions": "legacy functions",
    "function_call": "legacy functions", "response_format": "response formats (use a tool with a schema)",
    "reasoning_effort": "reasoning effort (model-specific on Bedrock)",
}
_HARMLESS = {"n": 1, "logprobs": False}
_KNOWN = {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
          "stop", "user", "tools", "tool_choice", "parallel_tool_calls", "stream_options", "store", "metadata",
          "service_tier", "prompt_cache_key", "safety_identifier", "verbosity"}
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
         "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
         "model_context_window_exceeded": "length"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


BEDROCK = Provider("a Bedrock", _REFUSED, _HARMLESS, _KNOWN)
_refuse = BEDROCK.refuse


def _image(url: str, where: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline is None or inline[0] not in _IMAGE_FORMATS:
        raise _refuse(where, "an image that is not inline PNG, JPEG, GIF or WebP data")
    return {"image": {"format": _IMAGE_FORMATS[inline[0]], "source": {"bytes": inline[1]}}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return BEDROCK.parts(content, where, lambda t: {"text": t}, _image)


_CACHE_POINT = {"cachePoint": {"type": "default"}}


def to_converse(body: dict[str, Any], cache: bool = False) -> dict[str, Any]:
    """The Converse request for a chat body (the model id goes in the URL). `cache`: cache points after
    the system prompt and the conversation so far (models with prompt caching: Claude, Nova)."""
    BEDROCK.check_fields(body)
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        add_turn(turns, role, blocks)

    for i, msg in enumerate(body.get("messages") or ()):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            if text := message_text(msg.get("content")):
                system.append({"text": text})
        elif role == "user":
            add("user", _blocks(msg.get("content"), where))
        elif role == "assistant":
            blocks = _blocks(msg.get("content"), where) if msg.get("content") else []
            for k, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") or {}
                blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": fn.get("name"), "input": BEDROCK.arguments(
                    fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments")}})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"toolResult": {"toolUseId": msg.get("tool_call_id"),
                                         "content": [{"text": message_text(msg.get("content"))}]}}])
        else:
            raise _refuse(f"{where}.role", f"the role {role!r}")
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        config["maxTokens"] = body.get("max_completion_tokens") or body["max_tokens"]
    for chat_key, key in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(chat_key) is not None:
            config[key] = body[chat_key]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    if body.get("top_k") is not None:  # not a Converse field: the model's own (Claude, Llama, Mistral take top_k)
        out["additionalModelRequestFields"] = {"top_k": body["top_k"]}
    if cache:
        if system:
            system.append(_CACHE_POINT)
        if turns:
            turns[-1]["content"].append(_CACHE_POINT)
    if body.get("tools"):
        specs = []
        for i, tool in enumerate(body["tools"]):
            if tool.get("type") != "function":
                raise _refuse(f"tools[{i}].type", f"a tool of type {tool.get('type')!r}")
            fn = tool.get("function") or {}
            spec = {"name": fn.get("name"), "inputSchema": {"json": fn.get("parameters") or {"type": "object"}}}
            if fn.get("description"):
                spec["description"] = fn["description"]
            specs.append({"toolSpec": spec})
        out["toolConfig"] = {"tools": specs}
        choice = body.get("tool_choice")
        if choice == "none":
            raise _refuse("tool_choice", "`none` (Converse has no way to forbid tool use; send no tools)")
        if choice == "required":
            out["toolConfig"]["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            out["toolConfig"]["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name")}}
        elif choice == "auto":
            out["toolConfig"]["toolChoice"] = {"auto": {}}
    return out


# ---- answers -------------------------------------------------------------------------------------
def usage_to_openai(usage: dict[str, Any]) -> dict[str, Any]:
    n = counter(usage)
    read, written = n("cacheReadInputTokens"), n("cacheWriteInputTokens")
    prompt = n("inputTokens") + read + written
    return {"prompt_tokens": prompt, "completion_tokens": n("outputTokens"), "total_tokens": prompt + n("outputTokens"),
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written}}


def finish_reason(stop: str | None) -> str:
    return _STOP.get(stop or "end_turn", "stop")


def to_completion(data: dict[str, Any], request_id: str, model: str) -> dict[str, Any]:
    msg = (data.get("output") or {}).get("message") if isinstance(data, dict) else None
    if not isinstance(msg, dict) or not isinstance(msg.get("content"), list):
        raise UpstreamError("bad_response", "upstream answer has no Converse `output.message`")
    text, calls = [], []
    for block in msg["content"]:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId") or "", "type": "function", "function": {
                "name": use.get("name") or "", "arguments": orjson.dumps(use.get("input") or {}).decode()}})
        # reasoningContent blocks are never asked for
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return {"id": request_id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(data.get("stopReason"))}],
            "usage": usage_to_openai(data.get("usage") or {})}


class StreamTranslator(ChunkTranslator):
    """ConverseStream events (`{"_event": type, ...payload}`) in, chat chunks out. The stream ends
    with `metadata` (usage) after `messageStop`: `done` is set by it."""

    def __init__(self, request_id: str, model: str) -> None:
        super().__init__(request_id, model)
        self.tools: dict[int, int] = {}  # content block index -> chat tool index

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("_event")
        if kind == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if use:
                index = self.tools[event.get("contentBlockIndex", 0)] = len(self.tools)
                return [self._chunk({"tool_calls": [{"index": index, "id": use.get("toolUseId") or "", "type": "function",
                                                     "function": {"name": use.get("name") or "", "arguments": ""}}]})]
            return []
        if kind == "contentBlockDelta":
            delta = event.get("delta") or {}
            if "text" in delta:
                return [self._chunk({"content": delta["text"]})]
            if "toolUse" in delta:
                index = self.tools.get(event.get("contentBlockIndex", 0), 0)
                return [self._chunk({"tool_calls": [{"index": index, "function": {
                    "arguments": (delta["toolUse"] or {}).get("input") or ""}}]})]
            return []
        if kind == "messageStop":
            return [self._chunk({}, finish_reason(event.get("stopReason")))]
        if kind == "metadata":
            self.done = True
            return [self._usage_chunk(usage_to_openai(event.get("usage") or {}))]
        if kind == "exception":
            return [{"error": {"message": event.get("message") or "upstream stream error",
                               "type": event.get("exception") or "api_error"}}]
        return []  # contentBlockStop and event types added later
