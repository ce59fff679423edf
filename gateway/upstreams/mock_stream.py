"""How every wire format of `gateway mock-server` streams: pre-encoded events written one at a time,
with the mock behaviour's `chunk_delay_ms` between them and its `cut_after` / `cut_times` fault (the
connection dropped after N events, the answer unfinished)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from aiohttp import web

from gateway.upstreams.mock_model import MockBehaviour


async def write_stream(request: web.Request, b: MockBehaviour, attempt: int, events: Iterable[bytes],
                       headers: dict[str, str], tail: Callable[[], bytes] | None = None) -> web.StreamResponse:
    """`tail`: what follows the events once they are all out (an end marker); not counted by `cut_after`."""
    cut_after = b.cut_after if b.cut_times is None or attempt <= b.cut_times else None
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    for i, event in enumerate(events):
        if cut_after is not None and i >= cut_after:
            request.transport.close()  # an upstream dying mid-answer
            return resp
        if b.chunk_delay_ms and i:
            await asyncio.sleep(b.chunk_delay_ms / 1000)
        if event:
            await resp.write(event)
    if tail is not None:
        await resp.write(tail())
    await resp.write_eof()
    return resp
