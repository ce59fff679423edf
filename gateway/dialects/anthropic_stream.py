"""Chat-completion chunks re-rendered as an Anthropic Messages event stream.

The sequence a Messages client expects: `message_start` (usage so far: the input-token estimate,
since OpenAI-style streams report usage only at the end), then per content block
`content_block_start` / `content_block_delta` (`text_delta`, or `input_json_delta` for a tool call's
arguments) / `content_block_stop`, then `message_delta` with the stop reason and the final usage
(the upstream's figures once the stream is over), then `message_stop`. Chunks may split text and
arguments anywhere: a block is opened when its kind or tool index changes, never per chunk.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.anthropic_messages import message_id, stop_reason, stream_error, usage_fields


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicStream:
    """One client stream; `feed` each chat chunk as the relay would have sent it, then `finish`."""

    def __init__(self, ex, input_estimate: int) -> None:
        self.ex = ex
        self.input_estimate = input_estimate
        self.started = False
        self.block: tuple | None = None  # ("text",) or ("tool", index) of the open block
        self.index = -1  # the open block's position in the message's content
        self.stop: str | None = None

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        message = {"id": message_id(self.ex.id), "type": "message", "role": "assistant",
                   "model": chunk.get("model") or self.ex.model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": self.input_estimate, "output_tokens": 0}}
        return event("message_start", {"type": "message_start", "message": message})

    def _open(self, key: tuple, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.block, self.index = key, self.index + 1
        return out + event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                   "content_block": block})

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._start(chunk)
        for c in chunk.get("choices") or ():
            if c.get("index", 0) != 0:
                continue  # the Messages API has one answer per request (to_chat never asks for more)
            delta = c.get("delta") or {}
            text = (delta.get("content") or "") + (delta.get("refusal") or "")
            if text:
                if self.block != ("text",):
                    out += self._open(("text",), {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": text})
            for call in delta.get("tool_calls") or ():
                key = ("tool", call.get("index", 0))
                fn = call.get("function") or {}
                if self.block != key:
                    out += self._open(key, {"type": "tool_use", "id": call.get("id") or "",
                                            "name": fn.get("name") or "", "input": {}})
                if fn.get("arguments"):
                    out += self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]})
            if c.get("finish_reason"):
                self.stop = stop_reason(c["finish_reason"])
                out += self._close()
        return out

    def finish(self, gateway_info: dict[str, Any]) -> bytes:
        """The end of a stream that completed (or was cut by a stream check: stop reason `refusal`)."""
        out = (b"" if self.started else self._start({})) + self._close()
        usage = usage_fields(self.ex.usage)
        out += event("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": self.stop or "end_turn", "stop_sequence": None},
                                       "usage": usage, "gateway": gateway_info})
        return out + event("message_stop", {"type": "message_stop"})

    def error(self, message: str, kind: str, gateway_info: dict[str, Any]) -> bytes:
        """A stream that failed after its headers were sent: Anthropic's `error` event (the SDK raises)."""
        return event("error", {**stream_error(message, kind), "gateway": gateway_info})
