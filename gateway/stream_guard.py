"""Response checks on streamed answers, before the user reads the bad part.

Per check, the policy chooses:
  hold     text is buffered until a sentence ends (or `hold_max_chars` is reached), the sentence is
           checked, and only then released - rewritten if a check redacted it, never if one blocked.
  monitor  text is released at once; completed sentences are checked alongside, and at the first
           violation the stream is ended with a `content_filter` finish (the upstream is cancelled).
The upstream's own finish chunk is held until the last sentence has passed both kinds of check, so
the finish reason a client sees is always the honest one.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.checks.base import Action, OutputSegment
from gateway.exchange import Exchange
from gateway.pipeline import Pipeline

# A sentence ends at . ! ? followed by optional closing quotes/brackets and whitespace (so "3.14" is not
# an end), at a CJK full stop (those scripts put no space after it), or at a newline.
_BOUNDARY = re.compile(r"[.!?][\"')\]\u201d\u2019]*\s+|[\u3002\uff01\uff1f][\u201d\u300d]*|\n+")


def split_complete(text: str, max_chars: int) -> tuple[str, str]:
    """(complete sentences, unfinished rest). Past `max_chars` without a boundary, cut at a space."""
    last = None
    for last in _BOUNDARY.finditer(text):
        pass
    if last is not None:
        return text[: last.end()], text[last.end():]
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        cut = cut + 1 if cut > 0 else max_chars
        return text[:cut], text[cut:]
    return "", text


@dataclass(slots=True)
class _Choice:
    pending: str = ""  # received, not yet a complete segment
    checked: str = ""  # already passed the checks (and, in hold mode, released)


@dataclass(slots=True)
class StreamGuard:
    ex: Exchange
    pipeline: Pipeline
    template: dict[str, Any] = field(default_factory=dict)  # id/model/created of the upstream's chunks
    choices: dict[int, _Choice] = field(default_factory=dict)
    violation: str | None = None  # name of the check that stopped the stream
    _monitor_queue: asyncio.Queue | None = None
    _monitor_task: asyncio.Task | None = None

    def __post_init__(self) -> None:
        if self.pipeline.monitor_checks:
            self._monitor_queue = asyncio.Queue()
            self._monitor_task = asyncio.create_task(self._monitor_worker())

    @property
    def holds(self) -> bool:
        return bool(self.pipeline.hold_checks)

    async def on_chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """What to send for one upstream chunk (possibly nothing yet). Sets `violation` to stop."""
        if not self.template:
            self.template = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if self.violation:
            return self._stop()
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [chunk]  # the usage chunk and the like carry no text
        send: list[dict[str, Any]] = []
        for entry in choices:
            idx = entry.get("index", 0)
            state = self.choices.setdefault(idx, _Choice())
            delta = entry.get("delta") or {}
            finish = entry.get("finish_reason")
            if isinstance(delta.get("content"), str):
                state.pending += delta["content"]
            # Role and tool-call deltas flow at once; held text and the finish reason wait.
            out_delta = {k: v for k, v in delta.items() if k != "content"} if self.holds else dict(delta)
            if finish:
                done, state.pending = state.pending, ""
            else:
                done, state.pending = split_complete(state.pending, self.pipeline.stream_settings.hold_max_chars)
            if done:
                released = await self._segment(idx, state, done, final=bool(finish))
                if self.violation:
                    return self._stop()
                if released:
                    out_delta["content"] = released
            if finish:
                await self.drain_monitor()
                if self.violation:
                    return self._stop()
            if out_delta or finish:
                send.append({**entry, "delta": out_delta, "finish_reason": finish})
        return [{**chunk, "choices": send}] if send else []

    async def flush(self) -> list[dict[str, Any]]:
        """The upstream broke off: check and release what is held (no finish reason follows)."""
        send = []
        for idx, state in sorted(self.choices.items()):
            text, state.pending = state.pending, ""
            released = await self._segment(idx, state, text, final=True) if text else ""
            if self.violation:
                return self._stop()
            if released:
                send.append({"index": idx, "delta": {"content": released}, "logprobs": None, "finish_reason": None})
        return [{**self.template, "object": "chat.completion.chunk", "choices": send}] if send else []

    def _stop(self) -> list[dict[str, Any]]:
        return [self.chunk_for(i, {}, "content_filter") for i in sorted(self.choices) or [0]]

    async def _segment(self, idx: int, state: _Choice, text: str, *, final: bool) -> str:
        """Check one completed segment; return the text to release in hold mode."""
        if not text:
            return ""
        seg = OutputSegment(idx, text, state.checked, final)
        released = text if self.holds else ""
        if self.holds:
            decision = await self.pipeline.check_segment(self.ex, seg, self.pipeline.hold_checks, "hold")
            if decision.action is Action.BLOCK:
                self.violation = decision.blocked_by.check if decision.blocked_by else "hold"
                return ""
            released = decision.text
            seg = OutputSegment(idx, released, state.checked, final)
        state.checked += released if self.holds else text
        if self._monitor_queue is not None and seg.text:
            self._monitor_queue.put_nowait(seg)
        return released

    async def _monitor_worker(self) -> None:
        assert self._monitor_queue is not None
        while True:
            seg = await self._monitor_queue.get()
            try:
                if not self.violation:
                    decision = await self.pipeline.check_segment(self.ex, seg, self.pipeline.monitor_checks,
                                                               "monitor")
                    # In monitor mode the text is already out: a redaction cannot recall it, so any
                    # verdict that would have changed the text stops the stream instead.
                    if decision.action in (Action.BLOCK, Action.REDACT):
                        self.violation = (
                            decision.blocked_by.check if decision.blocked_by else "monitor"
                        )
            finally:
                self._monitor_queue.task_done()

    async def drain_monitor(self) -> None:
        if self._monitor_queue is not None:
            await self._monitor_queue.join()

    async def close(self) -> None:
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            try:
                await self._monitor_task
            except asyncio.CancelledError:
                pass

    def chunk_for(self, idx: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**self.template, "object": "chat.completion.chunk",
                "choices": [{"index": idx, "delta": delta, "logprobs": None, "finish_reason": finish}]}
