"""The internal chat form to OpenAI's Responses API and back, for `openai` upstreams with
`api: responses` (models served only there, such as o3-pro or the codex models). Pure functions.

Requests go with `store: false`: the gateway keeps conversations itself (stored_responses.py), so
the provider is never asked to keep a copy. Chat fields the Responses API lacks (`stop`, `seed`,
penalties, `n`, ...) are a 400 naming them. Answers and event streams come back as chat
completions and chunks, with reasoning tokens and cached input tokens in the usage.
"""

from __future__ import annotations

from typing import Any

from gateway.upstreams.base import UpstreamError
from gateway.upstreams.wire import ChunkTranslator, Provider, message_text

_REFUSED = {
    "n": "several choices per request", "logprobs": "log probabilities", "top_logprobs": "log probabilities",
    "frequency_penalty": "frequency penalties", "presence_penalty": "presence penalties", "logit_bias": "logit biases",
    "seed": "seeded sampling", "stop": "stop sequences", "audio": "audio output", "modalities": "audio output",
    "prediction": "predicted outputs", "web_search_options": "chat-style web search", "functions": "legacy functions",
    "function_call": "legacy functions", "top_k": "top_k sampling",
}
_HARMLESS = {"n": 1, "logprobs": False}
_KNOWN = {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "user", "tools",
          "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "stream_options", "store",
          "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "verbosity"}


RESPONSES_API = Provider("a Responses API", _REFUSED, _HARMLESS, _KNOWN)
_refuse = RESPONSES_API.refuse


def _parts(content: Any, role: str, where: str) -> list[dict[str, Any]]:
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [{"type": kind, "text": content}]
    out = []
    for j, part in enumerate(content or ()):
        if part.get("type") == "text":
            out.append({"type": kind, "text": part.get("text") or ""})
        elif part.get("type") == "image_url" and role == "user":
            image = part.get("image_url") or {}
            out.append({"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")})
        else:
            raise _refuse(f"{where}.content[{j}].type", f"a {part.get('type')!r} content part")
    return out


def to_responses(body: dict[str, Any], model: str) -> dict[str, Any]:
    RESPONSES_API.check_fields(body)
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(body.get("messages") or ()):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer", "user"):
            items.append({"type": "message", "role": role, "content": _parts(msg.get("content"), role, where)})
        elif role == "assistant":
            if msg.get("content"):
                items.append({"type": "message", "role": "assistant",
                              "content": _parts(msg["content"], "assistant", where)})
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                items.append({"type": "function_call", "call_id": call.get("id"), "name": fn.get("name"),
                              "arguments": fn.get("arguments") or "{}"})
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": msg.get("tool_call_id"),
                          "output": message_text(msg.get("content"))})
        else:
            raise _refuse(f"{where}.role", f"the role {role!r}")
    out: dict[str, Any] = {"model": model, "input": items, "store": False}
    if body.get("stream"):
        out["stream"] = True
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        out["max_output_tokens"] = body.get("max_completion_tokens") or body["max_tokens"]
    for key in ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key", "parallel_tool_calls"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("service_tier") not in (None, "auto"):
        out["service_tier"] = body["service_tier"]
    if body.get("reasoning_effort"):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    text: dict[str, Any] = {}
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        text["format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        text["format"] = {"type": "json_schema", "name": schema.get("name") or "output",
                          "schema": schema.get("schema") or {}, **({"strict": schema["strict"]} if "strict" in schema else {})}
    if body.get("verbosity"):
        text["verbosity"] = body["verbosity"]
    if text:
        out["text"] = text
    if body.get("tools"):
        tools = []
        for i, tool in enumerate(body["tools"]):
            if tool.get("type") != "function":
                raise _refuse(f"tools[{i}].type", f"a tool of type {tool.get('type')!r}")
            fn = tool.get("function") or {}
            t = {"type": "function", "name": fn.get("name"), "parameters": fn.get("parameters") or {"type": "object"},
                 "strict": bool(fn.get("strict", False))}  # chat's default: Responses would make it strict
            if fn.get("description"):
                t["description"] = fn["description"]
            tools.append(t)
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        out["tool_choice"] = choice
    elif isinstance(choice, dict):
        out["tool_choice"] = {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return out


# ---- answers -------------------------------------------------------------------------------------
def usage_to_openai(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    out_details = usage.get("output_tokens_details") or {}
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": usage.get("total_tokens", (prompt or 0) + (completion or 0)),
            "prompt_tokens_details": {"cached_tokens": details.get("cached_tokens", 0)},
            "completion_tokens_details": {"reasoning_tokens": out_details.get("reasoning_tokens", 0)}}


def finish_reason(response: dict[str, Any], has_calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def to_completion(data: dict[str, Any], request_id: str, model: str) -> dict[str, Any]:
    if data.get("object") != "response" or not isinstance(data.get("output"), list):
        raise UpstreamError("bad_response", "upstream answer is not a Responses API response")
    if data.get("status") == "failed":
        raise UpstreamError("upstream_error", str((data.get("error") or {}).get("message") or "the response failed"))
    text, refusal, calls = [], [], []
    for item in data["output"]:
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif item.get("type") == "function_call":
            calls.append({"id": item.get("call_id") or "", "type": "function",
                          "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}})
        # reasoning items: hidden reasoning, counted in usage; nothing for a chat client
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None,
                               "refusal": "".join(refusal) or None}
    if calls:
        message["tool_calls"] = calls
    out = {"id": data.get("id") or request_id, "object": "chat.completion", "created": int(data.get("created_at") or 0),
           "model": data.get("model") or model,
           "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(data, bool(calls))}]}
    if (usage := usage_to_openai(data.get("usage"))) is not None:
        out["usage"] = usage
    return out


class StreamTranslator(ChunkTranslator):
    """Responses API stream events in, chat chunks out; `done` at response.completed / .incomplete."""

    def __init__(self, request_id: str, model: str) -> None:
        super().__init__(request_id, model)
        self.tools: dict[int, int] = {}  # output_index of a function_call item -> chat tool index

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "response.created":
            response = event.get("response") or {}
            self.base.update(id=response.get("id") or self.base["id"], model=response.get("model") or self.base["model"])
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "response.output_text.delta":
            return [self._chunk({"content": event.get("delta") or ""})]
        if kind == "response.refusal.delta":
            return [self._chunk({"refusal": event.get("delta") or ""})]
        if kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call":
            item = event["item"]
            index = self.tools[event.get("output_index", 0)] = len(self.tools)
            return [self._chunk({"tool_calls": [{"index": index, "id": item.get("call_id") or "", "type": "function",
                                                 "function": {"name": item.get("name") or "",
                                                              "arguments": item.get("arguments") or ""}}]})]
        if kind == "response.function_call_arguments.delta":
            index = self.tools.get(event.get("output_index", 0), 0)
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": event.get("delta") or ""}}]})]
        if kind in ("response.completed", "response.incomplete"):
            self.done = True
            response = event.get("response") or {}
            out = [self._chunk({}, finish_reason(response, bool(self.tools)))]
            if (usage := usage_to_openai(response.get("usage"))) is not None:
                out.append(self._usage_chunk(usage))
            return out
        if kind in ("response.failed", "error"):
            err = (event.get("response") or {}).get("error") or event
            return [{"error": {"message": err.get("message") or "upstream stream error", "type": "upstream_error"}}]
        return []  # in_progress, content parts, .done events, reasoning summaries, ...
