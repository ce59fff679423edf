"""The built-in mock upstream, in-process: lets the gateway, tests, demos and benchmarks run offline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.exchange import Exchange
from gateway.metering.tokenizer import encoding
from gateway.upstreams import mock_model
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.mock_model import MockBehaviour


class MockUpstreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["mock"]
    behaviour: MockBehaviour = Field(default_factory=MockBehaviour)


class MockUpstream:
    stream_usage = True

    def __init__(self, name: str, cfg: MockUpstreamConfig, base_dir: Path) -> None:
        self.name = name
        self.cfg = cfg
        self.base_dir = base_dir  # relative script paths are relative to the policies directory

    def problems_with(self, model: str) -> list[str]:
        """Load-time check of a route's target model name (`echo?latency_ms=5`, `scripted?script=...`)."""
        try:
            b = mock_model.behaviour_for(self.cfg.behaviour, model)
        except ValidationError as e:
            return [f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors(include_url=False)]
        if b.script:
            path = self.base_dir / b.script
            try:
                mock_model.load_script(str(path))
            except FileNotFoundError:
                return [f"script {b.script!r}: no such file (relative paths start at {self.base_dir})"]
            except (ValueError, OSError) as e:
                return [f"script {b.script!r}: {e}"]
        return []

    async def warm(self) -> None:
        # Loading the BPE file takes a few hundred ms; do it before /readyz, not on the first request.
        await asyncio.to_thread(encoding, "cl100k_base")

    async def close(self) -> None:
        pass

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        b = await self._prepare(ex, model)
        reply = mock_model.reply_text(b, body, _context(ex))
        return mock_model.completion(body, model, reply, ex.id, b.usage, mock_model.tool_call(b, body, ex.id))

    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> _MockStream:
        b = await self._prepare(ex, model)
        attempt = ex.state["mock_attempts"][self.name]
        reply = mock_model.reply_text(b, body, _context(ex))
        if b.vary:
            reply = f"Attempt {attempt}: {reply}"
        cut = b.cut_after if b.cut_times is None or attempt <= b.cut_times else None
        call = mock_model.tool_call(b, body, ex.id)
        return _MockStream(mock_model.stream_chunks(body, model, reply, ex.id, b.usage, call), b, cut)

    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._prepare(ex, model)
        return mock_model.embeddings(body, model)

    async def _prepare(self, ex: Exchange, model: str) -> MockBehaviour:
        b = mock_model.behaviour_for(self.cfg.behaviour, model, ex.options.mock)
        if b.script and not Path(b.script).is_absolute():
            b = b.model_copy(update={"script": str(self.base_dir / b.script)})
        attempts = ex.state.setdefault("mock_attempts", {})
        attempt = attempts[self.name] = attempts.get(self.name, 0) + 1
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.hang:
            await asyncio.sleep(3600)
        if b.fail_status and (b.fail_times is None or attempt <= b.fail_times):
            raise UpstreamError(
                f"http_{b.fail_status}", b.fail_message, status=b.fail_status, retry_after=b.retry_after
            )
        if b.garbage:
            raise UpstreamError("bad_response", "upstream sent an answer that is not JSON")
        return b


def _context(ex: Exchange) -> list[tuple[str, str]]:
    return [(d.id, d.text) for d in ex.options.context or ()]


class _MockStream:
    def __init__(self, chunks: list[dict[str, Any]], b: MockBehaviour, cut_after: int | None) -> None:
        self._chunks = iter(chunks)
        self._delay = b.chunk_delay_ms / 1000
        self._cut_after = cut_after
        self._sent = 0
        self.saw_done = False

    def __aiter__(self) -> _MockStream:
        return self

    async def __anext__(self) -> bytes:
        if self._cut_after is not None and self._sent >= self._cut_after:
            raise UpstreamError("stream_cut", "upstream closed the stream before it finished")
        chunk = next(self._chunks, None)
        if chunk is None:
            self.saw_done = True
            raise StopAsyncIteration
        if self._delay and self._sent:
            await asyncio.sleep(self._delay)
        self._sent += 1
        return orjson.dumps(chunk)

    def take_ready(self) -> list[bytes]:
        return []  # the mock yields one event per step, like a model producing tokens

    async def aclose(self) -> None:
        self._chunks = iter(())
