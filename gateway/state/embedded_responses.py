"""The embedded store of Responses-API responses (gateway/dialects/stored_responses.py): in this
process, an LRU bounded by total bytes; expired records are dropped when read. Lost on restart."""

from __future__ import annotations

import time
from collections import OrderedDict


class EmbeddedResponses:
    """In this process: an LRU bounded by total bytes; expired records are dropped when read."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    async def get(self, response_id: str) -> bytes | None:
        item = self._items.get(response_id)
        if item is None:
            return None
        if item[0] <= time.time():
            self._drop(response_id)
            return None
        self._items.move_to_end(response_id)
        return item[1]

    async def put(self, response_id: str, value: bytes, ttl_s: float) -> None:
        self._drop(response_id)
        value = bytes(memoryview(value))  # orjson's bytes keep their whole output buffer (see embedded_cache)
        self._items[response_id] = (time.time() + ttl_s, value)
        self._bytes += len(value)
        while self._items and self._bytes > self.max_bytes:
            _, (_, old) = self._items.popitem(last=False)
            self._bytes -= len(old)

    async def delete(self, response_id: str) -> bool:
        return self._drop(response_id)

    def _drop(self, response_id: str) -> bool:
        item = self._items.pop(response_id, None)
        if item is not None:
            self._bytes -= len(item[1])
        return item is not None

    async def close(self) -> None:
        pass
