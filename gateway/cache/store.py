"""The cache store protocol and what an entry holds. Backends: gateway/state/embedded_cache.py
(in-process LRU, optionally persisted to SQLite) and gateway/state/redis_cache.py (shared)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True, frozen=True)
class CacheKey:
    hash: str  # gateway/cache/keys.py request_key: already covers scope and model
    scope: str  # the tenant that may read it (gateway/cache/keys.py scope_of)
    model: str  # the public model name (for `gateway cache clear --model`)


@dataclass(slots=True)
class Entry:
    scope: str  # the tenant that may read it (gateway/cache/keys.py scope_of)
    model: str  # the public model name (for `gateway cache clear --model`)
    stored_at: float  # unix seconds
    expires_at: float
    body: bytes  # orjson of the stored answer and its metadata (gateway/cache/service.py)

    def size(self) -> int:
        return len(self.body) + 200  # plus the key, the fields and the LRU's bookkeeping, roughly


class CacheStore(Protocol):
    async def get(self, key: CacheKey, now: float) -> Entry | None:
        """The live entry under `key`, or None (absent or expired)."""
        ...

    async def put(self, key: CacheKey, entry: Entry) -> None:
        ...

    async def delete(self, key: CacheKey) -> None:
        """Drop one entry (it could not be read: a corrupt entry is removed, not served)."""
        ...

    async def clear(self, scope: str | None = None, model: str | None = None) -> int:
        """Drop every entry of `scope` and/or `model` (all when both are None); how many went."""
        ...

    def stats(self) -> dict[str, int | None]:
        """entries and bytes held (None where the backend cannot tell cheaply)."""
        ...

    async def close(self) -> None:
        ...
