"""Micro-batching of model work across concurrent requests.

A model pass over 16 texts costs far less than 16 passes over one (one matrix product instead of
16, one Python round trip), so requests that need the same model at the same time share a pass.
`MicroBatcher.submit` is awaited on the event loop; items wait while a batch is running and go
together in the next one (up to `max_items`). An idle batcher starts at once (after `max_wait_ms`,
0 by default), so a lone request pays no added latency. One batch runs at a time per model: the
model already uses every core for one pass, and a second pass in parallel would only queue.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.models.workers import run_model

I = TypeVar("I")  # noqa: E741 - an item, as submitted
O = TypeVar("O")  # its result


@dataclass(slots=True)
class _Waiting:
    items: Sequence[Any]
    future: asyncio.Future = field(repr=False)


class MicroBatcher(Generic[I, O]):
    def __init__(self, fn: Callable[[list[I]], Sequence[O]], *, max_items: int = 64, max_wait_ms: float = 0.0,
                 name: str = "model", executor: Executor | None = None) -> None:
        self.fn = fn
        self.executor = executor  # None: the shared model pool (gateway/models/workers.py)
        self.max_items = max_items
        self.max_wait_s = max_wait_ms / 1000
        self.name = name
        self._waiting: list[_Waiting] = []
        self._running = False
        self._scheduled = False
        # Counters for /metrics and benchmarks: batches run and items they carried.
        self.batches = 0
        self.items = 0

    async def submit(self, items: Sequence[I]) -> list[O]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        w = _Waiting(list(items), loop.create_future())
        self._waiting.append(w)
        if not self._running and not self._scheduled:
            self._scheduled = True
            if self.max_wait_s > 0:
                loop.call_later(self.max_wait_s, self._start)
            else:
                loop.call_soon(self._start)  # same-tick submissions still join
        return await w.future

    def _start(self) -> None:
        self._scheduled = False
        if self._running:
            return
        batch, count = [], 0
        while self._waiting and (not batch or count + len(self._waiting[0].items) <= self.max_items):
            w = self._waiting.pop(0)
            if w.future.cancelled():  # its request went away while waiting
                continue
            batch.append(w)
            count += len(w.items)
        if batch:
            self._running = True
            # A pass serves several requests, so it runs in an empty context: a line it logs must not
            # carry the trace id of whichever request happened to start it.
            asyncio.get_running_loop().create_task(self._run(batch), context=contextvars.Context())

    async def _run(self, batch: list[_Waiting]) -> None:
        flat = [x for w in batch for x in w.items]
        try:
            out = await run_model(self.fn, flat, executor=self.executor)
        except BaseException as e:  # every waiter gets the failure; the batcher carries on
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(e if isinstance(e, Exception) else RuntimeError(f"{self.name} batch cancelled"))
            if not isinstance(e, Exception):
                raise
        else:
            self.batches += 1
            self.items += len(flat)
            pos = 0
            for w in batch:
                n = len(w.items)
                if not w.future.done():
                    w.future.set_result(list(out[pos:pos + n]))
                pos += n
        finally:
            self._running = False
            if self._waiting:  # they have waited a whole batch already: go now
                self._start()
