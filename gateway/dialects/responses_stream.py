"""Chat-completion chunks re-rendered as a Responses API event stream.

The sequence a Responses client expects (each event with its `sequence_number`): `response.created`
and `response.in_progress` (the response without output), then per output item
`response.output_item.added`, for a message `response.content_part.added` / `response.output_text.delta`
(or `response.refusal.delta`) / `..done` / `response.content_part.done`, for a function call
`response.function_call_arguments.delta` / `.done`, then `response.output_item.done` with the whole
item; last `response.completed` (or `response.incomplete`) with the full response and the
upstream's usage, or `response.failed`. The stream ends there: Responses streams have no [DONE].
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.dialects.responses import (
    call_item, message_item, skeleton, status_of, stream_failure, usage_fields,
)


class ResponsesStream:
    """One client stream; `feed` each chat chunk as the relay would have sent it, then `finish`."""

    def __init__(self, ex, input_estimate: int) -> None:
        self.ex = ex
        self.seq = 0
        self.started = False
        self.model: str | None = None
        self.output: list[dict[str, Any]] = []  # finished items, in order
        self.item: dict[str, Any] | None = None  # the open item
        self.tool_index: int | None = None  # the open function call's chat tool index
        self.text = ""
        self.refusal = False
        self.finish_reason: str | None = None
        self.response: dict[str, Any] | None = None  # the final response, once finished

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _start(self) -> bytes:
        self.started = True
        response = skeleton(self.ex, "in_progress", self.model)
        return (self._event("response.created", {"response": response})
                + self._event("response.in_progress", {"response": response}))

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item["id"], "output_index": len(self.output)}

    def _open_message(self, refusal: bool) -> bytes:
        out = self._close()
        self.refusal, self.text = refusal, ""
        self.item = message_item(self.ex, len(self.output), "", refusal, "in_progress")
        part = self.item["content"][0]
        self.item["content"] = []
        return (out + self._event("response.output_item.added", {"output_index": len(self.output), "item": self.item})
                + self._event("response.content_part.added", {**self._where(), "content_index": 0, "part": part}))

    def _open_call(self, call: dict[str, Any]) -> bytes:
        out = self._close()
        self.tool_index = call.get("index", 0)
        self.item = call_item(self.ex, len(self.output), {**call, "function": {
            "name": (call.get("function") or {}).get("name"), "arguments": ""}}, "in_progress")
        return out + self._event("response.output_item.added", {"output_index": len(self.output), "item": self.item})

    def _close(self) -> bytes:
        item = self.item
        if item is None:
            return b""
        out = b""
        status = "completed"
        if item["type"] == "message":
            status, _ = status_of(self.finish_reason)
            done = message_item(self.ex, len(self.output), self.text, self.refusal, status)
            part = done["content"][0]
            if self.refusal:
                out += self._event("response.refusal.done", {**self._where(), "content_index": 0, "refusal": self.text})
            else:
                out += self._event("response.output_text.done", {**self._where(), "content_index": 0,
                                                                 "text": self.text, "logprobs": []})
            out += self._event("response.content_part.done", {**self._where(), "content_index": 0, "part": part})
        else:
            done = {**item, "status": status}
            out += self._event("response.function_call_arguments.done", {**self._where(), "name": item["name"],
                                                                         "arguments": item["arguments"]})
        out += self._event("response.output_item.done", {"output_index": len(self.output), "item": done})
        self.output.append(done)
        self.item, self.tool_index = None, None
        return out

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self.model is None and chunk.get("model"):
            self.model = chunk["model"]
        out = b"" if self.started else self._start()
        for c in chunk.get("choices") or ():
            if c.get("index", 0) != 0:
                continue  # one answer per response (to_chat never asks for more)
            delta = c.get("delta") or {}
            for refusal, text in ((False, delta.get("content")), (True, delta.get("refusal"))):
                if not text:
                    continue
                if self.item is None or self.item["type"] != "message" or self.refusal != refusal:
                    out += self._open_message(refusal)
                self.text += text
                kind = "response.refusal.delta" if refusal else "response.output_text.delta"
                extra = {} if refusal else {"logprobs": []}
                out += self._event(kind, {**self._where(), "content_index": 0, "delta": text, **extra})
            for call in delta.get("tool_calls") or ():
                if self.item is None or self.item["type"] != "function_call" or self.tool_index != call.get("index", 0):
                    out += self._open_call(call)
                args = (call.get("function") or {}).get("arguments")
                if args:
                    self.item["arguments"] += args
                    out += self._event("response.function_call_arguments.delta", {**self._where(), "delta": args})
            if c.get("finish_reason"):
                self.finish_reason = c["finish_reason"]
                out += self._close()
        return out

    def finish(self, gateway_info: dict[str, Any]) -> bytes:
        """The end of a stream that completed (or was cut by a stream check: incomplete, content_filter)."""
        out = (b"" if self.started else self._start()) + self._close()
        status, incomplete = status_of(self.finish_reason)
        response = skeleton(self.ex, status, self.model)
        response.update(output=self.output, incomplete_details=incomplete, usage=usage_fields(self.ex.usage),
                        gateway=gateway_info)
        if status == "completed":
            response["completed_at"] = int(time.time())
        self.response = response
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": response})

    def error(self, message: str, kind: str, gateway_info: dict[str, Any]) -> bytes:
        """A stream that failed after its headers were sent: `response.failed` (no partial items kept)."""
        out = b"" if self.started else self._start()
        response = stream_failure(self.ex, message, kind)
        response["output"] = self.output
        response["gateway"] = gateway_info
        return out + self._event("response.failed", {"response": response})
