"""The mock model: deterministic answers, usage and embeddings - a test double for an LLM, not an LLM.

Modes: `echo` (repeat the last user message), `context` (answer extractively from supplied context
documents, citing them), `fixed` (always `text`), `scripted` (first rule in a script file whose regex
matches the last user message), `tool` (call the request's first tool, or the one `tool_choice` names,
with the last user message as its first argument; once a tool result is the last message, answer with
that result: an agent loop in two turns). Failure injection (status codes, Retry-After, hangs, cut streams,
garbage bodies) is described by the same `MockBehaviour`, from the upstream's config, the target model
name (`echo?latency_ms=20&fail_status=429`) and, in-process, the request's `gateway.mock` object.
"""

from __future__ import annotations

import hashlib
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl


from gateway.config.yamlfile import parse_yaml
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.conversation import content_text
from gateway.metering.tokenizer import count_tokens


class MockBehaviour(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["echo", "context", "fixed", "scripted", "tool"] = "echo"
    text: str = "This is a reply from the mock model."
    script: str | None = Field(default=None, description="YAML/JSON list of {match: regex, reply: text}")
    latency_ms: float = Field(default=0, ge=0, le=600_000)
    chunk_delay_ms: float = Field(default=0, ge=0, le=60_000)
    fail_status: int | None = Field(default=None, ge=400, le=599)
    fail_times: int | None = Field(default=None, ge=0, description="fail this many attempts, then succeed")
    fail_message: str = Field(default="mock upstream failure", description="`{api_key}`: the key received")
    retry_after: float | None = Field(default=None, ge=0)
    hang: bool = False  # never answer (the gateway's timeouts must fire)
    cut_after: int | None = Field(default=None, ge=0, description="stream: stop after N chunks, unfinished")
    cut_times: int | None = Field(default=None, ge=0, description="cut only this many attempts, then stream in full")
    vary: bool = False  # each attempt's answer starts differently ("Attempt N: ..."): a replay cannot match
    garbage: bool = False  # answer 200 with a body that is not JSON
    usage: Literal["normal", "missing", "invalid"] = "normal"  # how the answer reports token usage
    # report this many of the prompt's tokens as read from / written to a prompt cache (providers that
    # have the field: cached_tokens on OpenAI, cache_read/cache_creation_input_tokens on Anthropic)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    # a provider-side safety block (mocks of providers that have one, e.g. Gemini): the prompt refused,
    # or the answer stopped partway
    blocked: Literal["prompt", "answer"] | None = None

    def merged(self, overrides: dict[str, Any] | None) -> MockBehaviour:
        if not overrides:
            return self
        return MockBehaviour.model_validate({**self.model_dump(exclude_unset=True), **overrides})


def behaviour_for(base: MockBehaviour, model: str, overrides: dict[str, Any] | None = None) -> MockBehaviour:
    """Combine upstream defaults, the target model name (`mode?key=value&...`) and request overrides."""
    from_name = _parse_model_name(model)
    merged = base.merged(from_name)
    return merged.merged(overrides)


@lru_cache(maxsize=256)
def _parse_model_name(model: str) -> dict[str, Any] | None:
    mode, _, query = model.partition("?")
    out: dict[str, Any] = {}
    if mode in ("echo", "context", "fixed", "scripted", "tool"):
        out["mode"] = mode
    for key, value in parse_qsl(query, keep_blank_values=True):
        out[key] = value
    return out or None


def validate_overrides(overrides: dict[str, Any]) -> str | None:
    """An error message for bad `gateway.mock` options, or None."""
    if "script" in overrides:
        # A client must never make the server read a file of its choosing.
        return "gateway.mock.script: script files can only be named in gateway.yaml, not per request"
    try:
        MockBehaviour.model_validate(overrides)
    except ValidationError as e:
        return "; ".join(f"gateway.mock.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
    return None


# ---- answers -------------------------------------------------------------------------------------
def last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return content_text(msg.get("content"))
    return ""


def reply_text(b: MockBehaviour, body: dict[str, Any], context: list[tuple[str, str]]) -> str:
    if b.mode == "tool":
        last = (body.get("messages") or [{}])[-1]
        return f"The tool said: {content_text(last.get('content'))}" if last.get("role") == "tool" else ""
    if b.mode == "echo":
        return last_user_text(body)
    if b.mode == "fixed":
        return b.text
    if b.mode == "scripted":
        return _scripted(b.script, last_user_text(body)) if b.script else b.text
    return _extractive(last_user_text(body), context or _context_from_messages(body))


def tool_call(b: MockBehaviour, body: dict[str, Any], request_id: str) -> dict[str, Any] | None:
    """`tool` mode's call, as an OpenAI `tool_calls` item; None when it answers in text instead."""
    if b.mode != "tool" or ((body.get("messages") or [{}])[-1]).get("role") == "tool":
        return None
    tools = [t.get("function") or {} for t in body.get("tools") or () if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        tools = [t for t in tools if t.get("name") == choice["function"]["name"]] or tools
    if not tools or choice == "none":
        return None
    params = tools[0].get("parameters") or {}
    names = list(params.get("required") or ()) or list(params.get("properties") or ())
    args = {names[0]: last_user_text(body)} if names else {}
    return {"id": f"call_mock_{request_id[-8:]}", "type": "function",
            "function": {"name": tools[0].get("name", ""), "arguments": orjson.dumps(args).decode()}}


def _context_from_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    docs = []
    for i, msg in enumerate(body.get("messages") or []):
        if msg.get("role") in ("system", "tool"):
            docs.append((msg.get("tool_call_id") or f"{msg['role']}-{i}", content_text(msg.get("content"))))
    return docs


_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")  # lines of a system prompt are separate sentences too
_STOP = frozenset("a an the is are was were be to of in on at for and or what who when where how why which "
                  "does do did it its this that with by as from".split())


def _extractive(question: str, docs: list[tuple[str, str]]) -> str:
    """The context sentence sharing most content words with the question, cited as [doc id]."""
    q = set(_WORD.findall(question.lower())) - _STOP
    best: tuple[int, int, str, str] | None = None
    for order, (doc_id, text) in enumerate(docs):
        for sentence in _SENTENCE.split(text.strip()):
            overlap = len(q & set(_WORD.findall(sentence.lower())))
            if sentence and (best is None or overlap > best[0]):
                best = (overlap, -order, sentence, doc_id)
    if best is None or best[0] == 0:
        return "I cannot answer that from the provided context."
    return f"{best[2]} [{best[3]}]"


def load_script(path: str) -> list[tuple[re.Pattern[str] | None, str]]:
    # Keyed on the modification time too, so an edited script applies without a restart.
    return _load_script(path, Path(path).stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _load_script(path: str, _mtime: int) -> list[tuple[re.Pattern[str] | None, str]]:
    rules = parse_yaml(Path(path)) or []  # ValueError with file:line on bad YAML or duplicate keys
    if not isinstance(rules, list):
        raise ValueError(f"{path}: a mock script is a list of {{match: regex, reply: text}}")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("reply"), str):
            raise ValueError(f"{path}: item {i} needs a `reply:` string")
        match = rule.get("match")
        try:
            out.append((re.compile(match, re.IGNORECASE) if match else None, rule["reply"]))
        except re.error as e:
            raise ValueError(f"{path}: item {i}: `match` is not a valid regular expression ({e})") from None
    return out


def _scripted(path: str, prompt: str) -> str:
    for pattern, reply in load_script(path):
        if pattern is None or pattern.search(prompt):
            return reply
    return "(no scripted reply matched)"


# ---- OpenAI-shaped payloads ----------------------------------------------------------------------
def usage_for(body: dict[str, Any], reply: str, n: int = 1) -> dict[str, int]:
    """`reply`: the generated text (for a tool call, its arguments)."""
    # OpenAI's chat accounting: 3 tokens of framing per message, 3 to prime the reply.
    prompt = 3
    for msg in body.get("messages") or []:
        prompt += 3 + count_tokens(content_text(msg.get("content"))) + count_tokens(str(msg.get("role", "")))
    completion = count_tokens(reply) * n
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _usage_field(kind: str, body: dict[str, Any], reply: str, n: int) -> dict[str, Any]:
    if kind == "missing":
        return {}
    if kind == "invalid":
        return {"usage": {"prompt_tokens": -1, "completion_tokens": "many", "total_tokens": None}}
    return {"usage": usage_for(body, reply, n)}


def completion(
    body: dict[str, Any], model: str, reply: str, request_id: str, usage: str = "normal",
    call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    n = int(body.get("n") or 1)
    message: dict[str, Any] = {"role": "assistant", "content": reply, "refusal": None}
    if call is not None:
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
        reply = call["function"]["arguments"]
    return {
        "id": f"chatcmpl-mock-{request_id[-12:]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": message,
                "logprobs": None,
                "finish_reason": "stop" if call is None else "tool_calls",
            }
            for i in range(n)
        ],
        **_usage_field(usage, body, reply, n),
        "system_fingerprint": "mock",
    }


_PIECE = re.compile(r"\s*\S+")


def stream_chunks(
    body: dict[str, Any], model: str, reply: str, request_id: str, usage: str = "normal",
    call: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The chunks of a streamed answer: role, one word per chunk (a tool call: its id and name, then
    its arguments in pieces of 8 characters), finish; usage when asked."""
    n = int(body.get("n") or 1)
    base = {"id": f"chatcmpl-mock-{request_id[-12:]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "mock"}

    def chunk(i: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    out = [chunk(i, {"role": "assistant", "content": ""}) for i in range(n)]
    if call is not None:
        args = reply = call["function"]["arguments"]
        for i in range(n):
            out.append(chunk(i, {"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            out.extend(chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": args[k:k + 8]}}]})
                       for k in range(0, len(args), 8))
        out.extend(chunk(i, {}, "tool_calls") for i in range(n))
    else:
        for piece in _PIECE.findall(reply) or [reply]:
            out.extend(chunk(i, {"content": piece}) for i in range(n))
        out.extend(chunk(i, {}, "stop") for i in range(n))
    if (body.get("stream_options") or {}).get("include_usage") and usage != "missing":
        out.append({**base, "choices": [], **_usage_field(usage, body, reply, n)})
    return out


def embedding_vector(text: str, dim: int) -> list[float]:
    """Hashed bag of words, L2-normalised: deterministic, and texts sharing words are similar."""
    import numpy as np  # only embeddings need it; keeps gateway start-up lean

    vec = np.zeros(dim, dtype=np.float64)
    for word in _WORD.findall(text.lower()) or [""]:
        h = hashlib.blake2b(word.encode(), digest_size=8).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        vec[idx] += 1.0 if h[4] & 1 else -1.0
    norm = np.linalg.norm(vec)
    return (vec / norm if norm else vec).round(6).tolist()


def embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    dim = int(body.get("dimensions") or 256)
    tokens = sum(count_tokens(t) if isinstance(t, str) else len(t) for t in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i,
             "embedding": embedding_vector(t if isinstance(t, str) else " ".join(map(str, t)), dim)}
            for i, t in enumerate(texts)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
