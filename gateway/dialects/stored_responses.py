"""Stored Responses-API responses: what `previous_response_id` continues and `GET /v1/responses/{id}` returns.

A response is stored (unless the request said `store: false`) with the key that made it and an
expiry; another key asking for it, or anyone after the expiry, is told it does not exist, so one
tenant's conversations never reach another. Each record holds the response object as the client got
it and the conversation so far in the internal chat form (without `instructions`, which OpenAI does
not carry over either), so a continuation is one lookup whatever the conversation's length.

The store is chosen once at start-up (`responses:` in gateway.yaml): in this process (an LRU with a
memory cap) or in Redis, where every worker and replica sees the same responses.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import GatewayError, InvalidRequest

log = logging.getLogger("gateway.responses")


class ResponsesSettings(BaseModel):
    """`responses:` in gateway.yaml."""

    model_config = ConfigDict(extra="forbid")
    store: Literal["auto", "embedded", "redis"] = Field(default="auto", description=(
        "auto: redis when state.counters is redis (every replica sees every response), else embedded "
        "(in this process; lost on restart)"))
    ttl_s: float = Field(default=30 * 86400, gt=0, le=365 * 86400, description=(
        "how long a stored response can be continued or fetched (OpenAI keeps them 30 days)"))
    max_mb: float = Field(default=256, gt=0, le=65536, description=(
        "embedded store: memory cap of all stored responses (least recently used dropped first)"))


class ResponseBackend(Protocol):
    """Where records live: bytes by response id, expiring on their own."""

    async def get(self, response_id: str) -> bytes | None: ...

    async def put(self, response_id: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, response_id: str) -> bool: ...

    async def close(self) -> None: ...


class StoredResponses:
    """The service the Responses dialect uses: ownership, expiry and the record format."""

    def __init__(self, settings: ResponsesSettings, backend: ResponseBackend, on_error=None) -> None:
        self.settings = settings
        self.backend = backend
        self.on_error = on_error or (lambda: None)

    def _unavailable(self, action: str, e: Exception) -> GatewayError:
        """A store that does not answer: a 503 that says so (never a pretended 404, nor a 500)."""
        self.on_error()
        log.warning("response store unavailable on %s (%s)", action, type(e).__name__)
        return GatewayError("The stored-responses store is unavailable; try again.", status=503,
                            type="service_unavailable", code="response_store_unavailable")

    async def _record(self, response_id: str, owner: str) -> dict[str, Any] | None:
        try:
            raw = await self.backend.get(response_id)
        except Exception as e:
            raise self._unavailable("read", e) from None
        if raw is None:
            return None
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        # another key's response is answered exactly like a missing one: its existence is not revealed
        return record if record.get("owner") == owner else None

    async def history(self, response_id: str, owner: str) -> list[dict[str, Any]]:
        """The conversation a `previous_response_id` continues (400 when there is none for this key)."""
        record = await self._record(response_id, owner)
        if record is None:
            raise InvalidRequest(
                f"Previous response with id {response_id!r} not found. Responses are kept for "
                f"{self.settings.ttl_s / 86400:g} days, only for the key that made them, and not at all when "
                "the request said `store: false`.", param="previous_response_id", code="previous_response_not_found")
        return record["history"]

    async def _found(self, response_id: str, owner: str) -> dict[str, Any]:
        """The record, or the 404 every /v1/responses/{id} route answers for a missing one."""
        record = await self._record(response_id, owner)
        if record is None:
            raise GatewayError(f"Response with id {response_id!r} not found.", status=404,
                               type="invalid_request_error", code="response_not_found")
        return record

    async def response(self, response_id: str, owner: str) -> dict[str, Any]:
        return (await self._found(response_id, owner))["response"]

    async def keep(self, owner: str, response: dict[str, Any], history: list[dict[str, Any]],
                   items: list[dict[str, Any]] | None = None) -> None:
        """Store a finished response (`items`: its request's input, for input_items); a failing store is
        logged and counted, and the client still gets its answer (a continuation then gets a clear 400)."""
        value = orjson.dumps({"owner": owner, "response": response, "history": history, "input": items or []})
        try:
            await self.backend.put(response["id"], value, self.settings.ttl_s)
        except Exception as e:
            self.on_error()
            log.warning("response %s not stored: store unavailable (%s)", response["id"], type(e).__name__)

    async def input_items(self, response_id: str, owner: str) -> list[dict[str, Any]]:
        return (await self._found(response_id, owner)).get("input") or []

    async def delete(self, response_id: str, owner: str) -> None:
        await self._found(response_id, owner)
        try:
            await self.backend.delete(response_id)
        except Exception as e:
            raise self._unavailable("delete", e) from None

    async def close(self) -> None:
        await self.backend.close()
