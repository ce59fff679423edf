"""The internal chat form to the Gemini API's `generateContent` wire format and back, for the
`gemini` upstream type. Pure functions, no I/O.

Requests: system messages become `systemInstruction`, assistant turns `model` turns with
`functionCall` parts, tool messages `functionResponse` parts (Gemini names the function, so the
call's name is looked up by its id), consecutive turns of one role merged. Answers: text and
function calls as a chat completion; a prompt or an answer stopped for safety (SAFETY, BLOCKLIST,
PROHIBITED_CONTENT, SPII, RECITATION, IMAGE_SAFETY) is `finish_reason: content_filter`; usage with
cached tokens and thinking tokens (billed as output) mapped onto OpenAI's fields.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.wire import ChunkTranslator, Provider, add_turn, counter, data_url, message_text

_REFUSED = {"logprobs": "log probabilities", "top_logprobs": "log probabilities", "logit_bias": "logit biases",
            "audio": "audio output", "modalities": "audio output", "prediction": "predicted outputs",
            "web_search_options": "OpenAI web search", "functions": "legacy functions",
            "function_call": "legacy functions", "parallel_tool_calls": "turning parallel tool calls off"}
_HARMLESS = {"logprobs": False, "parallel_tool_calls": True}
_KNOWN = {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
          "stop", "n", "seed", "presence_penalty", "frequency_penalty", "tools", "tool_choice", "response_format",
          "reasoning_effort", "user", "stream_options", "store", "metadata", "service_tier", "prompt_cache_key",
          "safety_identifier", "verbosity"}
_SAFETY = {"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "RECITATION", "IMAGE_SAFETY", "LANGUAGE"}
_BUDGETS = {"minimal": 0, "low": 1024, "medium": 8192, "high": 24576}  # thinkingBudget per reasoning_effort


GEMINI = Provider("a Gemini", _REFUSED, _HARMLESS, _KNOWN)
_refuse = GEMINI.refuse


def _image(url: str, where: str) -> dict[str, Any]:
    if (inline := data_url(url)) is None:
        raise _refuse(where, "an image by URL (Gemini takes inline data or files it stores)")
    return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    return GEMINI.parts(content, where, lambda t: {"text": t}, _image)


def to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """The generateContent request for a chat body (the model goes in the URL)."""
    GEMINI.check_fields(body)
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        add_turn(contents, role, parts, "parts")

    for i, msg in enumerate(body.get("messages") or ()):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.append(message_text(msg.get("content")))
        elif role == "user":
            add("user", _parts(msg.get("content"), where))
        elif role == "assistant":
            parts = _parts(msg.get("content"), where) if msg.get("content") else []
            for k, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") or {}
                names[call.get("id") or ""] = fn.get("name") or ""
                parts.append({"functionCall": {"name": fn.get("name"), "args": GEMINI.arguments(
                    fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments")}})
            add("model", parts)
        elif role == "tool":
            name = names.get(msg.get("tool_call_id") or "")
            if name is None:
                raise InvalidRequest(f"`{where}.tool_call_id`: no earlier assistant tool call has this id (Gemini "
                                     "needs the function's name for its result).", param=f"{where}.tool_call_id")
            add("user", [{"functionResponse": {"name": name, "response": {"content": message_text(msg.get("content"))}}}])
        else:
            raise _refuse(f"{where}.role", f"the role {role!r}")
    out: dict[str, Any] = {"contents": contents}
    if any(system):
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(s for s in system if s)}]}
    config: dict[str, Any] = {}
    for chat_key, key in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
                          ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
                          ("n", "candidateCount")):
        if body.get(chat_key) is not None:
            config[key] = body[chat_key]
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        config["maxOutputTokens"] = body.get("max_completion_tokens") or body["max_tokens"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = (fmt.get("json_schema") or {}).get("schema") or {}
    if body.get("reasoning_effort"):
        if body["reasoning_effort"] not in _BUDGETS:
            raise _refuse("reasoning_effort", f"the effort {body['reasoning_effort']!r}")
        config["thinkingConfig"] = {"thinkingBudget": _BUDGETS[body["reasoning_effort"]]}
    if config:
        out["generationConfig"] = config
    if body.get("tools"):
        decls = []
        for i, tool in enumerate(body["tools"]):
            if tool.get("type") != "function":
                raise _refuse(f"tools[{i}].type", f"a tool of type {tool.get('type')!r}")
            fn = tool.get("function") or {}
            decl = {"name": fn.get("name")}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if fn.get("parameters"):
                decl["parametersJsonSchema"] = fn["parameters"]
            decls.append(decl)
        out["tools"] = [{"functionDeclarations": decls}]
        choice = body.get("tool_choice")
        if choice is not None:
            out["toolConfig"] = {"functionCallingConfig": _tool_choice(choice)}
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "required":
        return {"mode": "ANY"}
    if choice == "none":
        return {"mode": "NONE"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name")]}
    raise _refuse("tool_choice", f"the tool choice {choice!r}")


# ---- answers -------------------------------------------------------------------------------------
def usage_to_openai(meta: dict[str, Any]) -> dict[str, Any]:
    n = counter(meta)
    thoughts = n("thoughtsTokenCount")
    prompt = n("promptTokenCount") + n("toolUsePromptTokenCount")
    completion = n("candidatesTokenCount") + thoughts  # thinking is billed as output
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    if reason in _SAFETY:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_calls else "stop"


def _calls(parts: list[dict[str, Any]], first: int, prefix: str) -> list[dict[str, Any]]:
    out = []
    for part in parts:
        if "functionCall" in part:
            fc = part["functionCall"] or {}
            out.append({"id": fc.get("id") or f"call_{prefix}_{first + len(out)}", "type": "function", "function": {
                "name": fc.get("name") or "", "arguments": orjson.dumps(fc.get("args") or {}).decode()}})
    return out


def _candidates(data: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise UpstreamError("bad_response", "upstream answer is not a Gemini response")
    cands = data.get("candidates")
    if cands is None and (data.get("promptFeedback") or {}).get("blockReason"):
        return [{"index": 0, "content": {"parts": []}, "finishReason": "SAFETY"}]  # the prompt was blocked
    if not isinstance(cands, list):
        raise UpstreamError("bad_response", "upstream answer has no `candidates` list")
    return cands


def to_completion(data: dict[str, Any], request_id: str, model: str) -> dict[str, Any]:
    choices = []
    for i, cand in enumerate(_candidates(data)):
        parts = (cand.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
        calls = _calls(parts, 0, request_id[-8:])
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": cand.get("index", i), "message": message,
                        "finish_reason": finish_reason(cand.get("finishReason") or "STOP", bool(calls))})
    return {"id": data.get("responseId") or request_id, "object": "chat.completion", "created": 0,
            "model": data.get("modelVersion") or model, "choices": choices,
            "usage": usage_to_openai(data.get("usageMetadata") or {})}


class StreamTranslator(ChunkTranslator):
    """streamGenerateContent chunks in, chat-completion chunks out. Gemini's stream has no end
    marker: the chunk with a finishReason (and usage) is the last, and `done` is set by it."""

    def __init__(self, request_id: str, model: str) -> None:
        super().__init__(request_id, model)
        self.request_id, self.model = request_id, model
        self.started = False
        self.calls = 0

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self.base.update(id=data.get("responseId") or self.request_id, model=data.get("modelVersion") or self.model)
        base = self.base
        out: list[dict[str, Any]] = []
        finished = False
        for i, cand in enumerate(_candidates(data)):
            delta: dict[str, Any] = {} if self.started else {"role": "assistant"}
            parts = (cand.get("content") or {}).get("parts") or []
            text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
            if text:
                delta["content"] = text
            calls = _calls(parts, self.calls, self.request_id[-8:])
            if calls:  # Gemini streams a call whole, in one part
                delta["tool_calls"] = [{"index": self.calls + k, **c} for k, c in enumerate(calls)]
                self.calls += len(calls)
            reason = finish_reason(cand.get("finishReason"), self.calls > 0)
            finished = finished or reason is not None
            out.append({**base, "choices": [{"index": cand.get("index", i), "delta": delta, "finish_reason": reason}]})
        self.started = True
        if finished:
            self.done = True
            out.append(self._usage_chunk(usage_to_openai(data.get("usageMetadata") or {})))
        return out
