"""Stored Responses-API responses in Redis: one string per response, `<prefix>:resp:<id>`, expiring
with the response (PX), so every worker and replica can continue any conversation."""

from __future__ import annotations

from gateway.state.redis_cache import store_client


class RedisResponses:
    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        self._redis = store_client(url, timeout_s)
        self.prefix = f"{prefix}:resp:"

    async def get(self, response_id: str) -> bytes | None:
        return await self._redis.get(self.prefix + response_id)

    async def put(self, response_id: str, value: bytes, ttl_s: float) -> None:
        await self._redis.set(self.prefix + response_id, value, px=max(1, int(ttl_s * 1000)))

    async def delete(self, response_id: str) -> bool:
        return bool(await self._redis.delete(self.prefix + response_id))

    async def close(self) -> None:
        await self._redis.aclose()
