"""The shared cache store: entries in Redis, read by every worker and replica.

One string per entry, `<prefix>:cache:<scope hex>:<model hex>:<request hash>`, expiring with the
entry (PX), holding `stored_at expires_at\\n` and the body. Scope and model are hex-encoded in the
key so that `gateway cache clear --key K --model M` is one SCAN pattern, whatever the names hold.
Entries are evicted by Redis itself (its maxmemory policy); the gateway does not count them.
"""

from __future__ import annotations

import time

from gateway.cache.store import CacheKey, Entry


def store_client(url: str, timeout_s: float):
    """A Redis client for a store whose every call may fail on its own (cache, stored responses): the
    timeout applies to each call, and a failure counts as that call failing."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                   health_check_interval=30)


class RedisCache:
    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        self._redis = store_client(url, timeout_s)
        self.prefix = f"{prefix}:cache"

    def _name(self, key: CacheKey) -> str:
        return f"{self.prefix}:{key.scope.encode().hex()}:{key.model.encode().hex()}:{key.hash}"

    async def get(self, key: CacheKey, now: float) -> Entry | None:
        raw = await self._redis.get(self._name(key))
        if raw is None:
            return None
        head, sep, body = raw.partition(b"\n")
        try:
            stored_at, expires_at = (float(x) for x in head.split(b" "))
        except ValueError:
            stored_at = expires_at = 0.0
        if not sep or expires_at <= 0:
            return Entry(key.scope, key.model, 0.0, 0.0, b"")  # unreadable: the service removes it
        if expires_at <= now:
            return None
        return Entry(key.scope, key.model, stored_at, expires_at, body)

    async def put(self, key: CacheKey, entry: Entry) -> None:
        ttl_ms = max(1, int((entry.expires_at - time.time()) * 1000))
        value = f"{entry.stored_at!r} {entry.expires_at!r}\n".encode() + entry.body
        await self._redis.set(self._name(key), value, px=ttl_ms)

    async def delete(self, key: CacheKey) -> None:
        await self._redis.delete(self._name(key))

    async def clear(self, scope: str | None = None, model: str | None = None) -> int:
        pattern = (f"{self.prefix}:{scope.encode().hex() if scope is not None else '*'}:"
                   f"{model.encode().hex() if model is not None else '*'}:*")
        gone = 0
        batch: list[bytes] = []
        async for name in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= 500:
                gone += await self._redis.unlink(*batch)
                batch = []
        if batch:
            gone += await self._redis.unlink(*batch)
        return gone

    def stats(self) -> dict[str, int | None]:
        return {"entries": None, "bytes": None}

    async def close(self) -> None:
        await self._redis.aclose()
