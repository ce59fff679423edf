"""Streams and the cache: a stored answer played back as a chat.completion.chunk stream (so a
streaming client gets a proper SSE stream from a hit), and a streamed answer assembled into the one
completion the cache stores.

The played-back stream has the same interface as an upstream's (gateway/upstreams/base.py), so it
goes through the same relay: pseudonyms restored, stream checks in hold or monitor mode, usage
chunk only when the client asked for one.
"""

from __future__ import annotations

from typing import Any

import orjson

PIECE_CHARS = 32  # a cached answer is replayed in pieces of about this many characters, at word ends


def _pieces(text: str) -> list[str]:
    out, start = [], 0
    while start < len(text):
        end = start + PIECE_CHARS
        if end < len(text):
            space = text.find(" ", end)
            end = len(text) if space < 0 else space + 1
        out.append(text[start:end])
        start = end
    return out


def completion_chunks(completion: dict[str, Any]) -> list[bytes]:
    """The SSE payloads (without `data: `) of `completion` streamed: per choice a role chunk, its
    text in pieces, its tool calls, its finish; then a usage chunk."""
    head = {"id": completion.get("id") or "chatcmpl-cache", "object": "chat.completion.chunk",
            "created": completion.get("created") or 0, "model": completion.get("model") or ""}
    if completion.get("system_fingerprint"):
        head["system_fingerprint"] = completion["system_fingerprint"]
    out: list[bytes] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        out.append(orjson.dumps({**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                     "finish_reason": finish}]}))

    for choice in completion.get("choices") or ():
        idx = choice.get("index", 0)
        message = choice.get("message") or {}
        # as OpenAI streams it: content "" in the role chunk when the answer has text, null when not
        chunk(idx, {"role": message.get("role") or "assistant",
                    "content": "" if isinstance(message.get("content"), str) else None})
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            chunk(idx, {"refusal": message["refusal"]})
        for piece in _pieces(message.get("content") or "") if isinstance(message.get("content"), str) else ():
            chunk(idx, {"content": piece})
        for i, call in enumerate(message.get("tool_calls") or ()):
            fn = call.get("function") or {}
            chunk(idx, {"tool_calls": [{"index": i, "id": call.get("id"), "type": call.get("type") or "function",
                                        "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}}]})
        chunk(idx, {}, choice.get("finish_reason") or "stop")
    if isinstance(completion.get("usage"), dict):
        out.append(orjson.dumps({**head, "choices": [], "usage": completion["usage"]}))
    return out


class CachedStream:
    """A finished stream, as the relay reads an upstream's: every event is ready at once."""

    saw_done = True

    def __init__(self, payloads: list[bytes]) -> None:
        self._rest = list(payloads)

    def __aiter__(self) -> CachedStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._rest:
            raise StopAsyncIteration
        return self._rest.pop(0)

    def take_ready(self) -> list[bytes]:
        rest, self._rest = self._rest, []
        return rest

    async def aclose(self) -> None:
        self._rest = []


class StreamAssembler:
    """Collects a stream's chunks as the upstream sent them (before pseudonyms are restored) and
    builds the completion they add up to."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if not self.head:
            self.head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            idx = c.get("index", 0)
            state = self.choices.setdefault(idx, {"role": "assistant", "content": [], "refusal": [], "tools": {},
                                                  "finish": None})
            delta = c.get("delta") or {}
            if isinstance(delta.get("role"), str):
                state["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                state["content"].append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                state["refusal"].append(delta["refusal"])
            for call in delta.get("tool_calls") or ():
                slot = state["tools"].setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                                        "name": [], "arguments": []})
                if call.get("id"):
                    slot["id"] = call["id"]
                if call.get("type"):
                    slot["type"] = call["type"]
                fn = call.get("function") or {}
                if isinstance(fn.get("name"), str):
                    slot["name"].append(fn["name"])
                if isinstance(fn.get("arguments"), str):
                    slot["arguments"].append(fn["arguments"])
            if c.get("finish_reason"):
                state["finish"] = c["finish_reason"]

    def completion(self) -> dict[str, Any]:
        choices = []
        for idx in sorted(self.choices):
            s = self.choices[idx]
            message: dict[str, Any] = {"role": s["role"], "content": "".join(s["content"]) if s["content"] else None}
            if s["refusal"]:
                message["refusal"] = "".join(s["refusal"])
            if s["tools"]:
                message["tool_calls"] = [{"id": t["id"], "type": t["type"],
                                          "function": {"name": "".join(t["name"]), "arguments": "".join(t["arguments"])}}
                                         for _, t in sorted(s["tools"].items())]
            choices.append({"index": idx, "message": message, "logprobs": None, "finish_reason": s["finish"]})
        out = {**self.head, "object": "chat.completion", "choices": choices}
        if self.usage is not None:
            out["usage"] = self.usage
        return out
