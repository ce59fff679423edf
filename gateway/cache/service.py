"""The exact response cache on the request path: decide whether a request may use it, look it up
(waiting for an identical request already at the upstream), serve a hit, store a miss.

Safe by construction:
  - the key is taken after the request checks and the prompt render, and includes the tenant scope
    (gateway/cache/keys.py): one tenant's answer is never another's, and a new prompt version or a
    redaction is a different request;
  - what is stored is the upstream's raw answer (before pseudonyms are restored and before response
    checks), and only when the response checks let it through unchanged; a hit goes through the same
    restore and response checks as a fresh answer, for this request;
  - a hit is a ledger row with no upstream tokens, `cache = 'hit'`, and the cost it saved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.cache.keys import cache_control, deterministic, request_key, scope_of
from gateway.cache.semantic import SemanticIndex, last_user_turn, signature, without_turn
from gateway.cache.settings import CacheSettings
from gateway.cache.store import CacheKey, CacheStore, Entry
from gateway.checks.base import Action
from gateway.exchange import Attempt, Exchange
from gateway.metering.pricing import cost_usd
from gateway.metering.usage import Usage

log = logging.getLogger("gateway.cache")

STORE_RETRY_S = 5.0  # after a failed store call, requests skip the store this long

# Finish reasons of an answer worth serving again (content_filter, or none at all, is not).
_COMPLETE = frozenset({"stop", "length", "tool_calls", "function_call"})


@dataclass(slots=True)
class CacheOutcome:
    """What the cache did for one request (Exchange.cache): headers, the `gateway` object, the ledger."""

    status: str  # hit | miss | bypass
    reason: str | None = None  # bypass: why the request was not cacheable
    age_s: float | None = None  # hit: how old the answer is
    saved_usd: float | None = None  # hit: what the upstream answer had cost
    origin: Attempt | None = None  # hit: the upstream and model that produced it
    coalesced: bool = False  # hit: waited for an identical request that was at the upstream
    similarity: float | None = None  # semantic hit: cosine similarity of the last user turns

    def headers(self) -> dict[str, str]:
        out = {"x-gateway-cache": self.status}
        if self.age_s is not None:
            out["age"] = str(int(self.age_s))
        if self.similarity is not None:
            out["x-gateway-cache-similarity"] = f"{self.similarity:.4f}"
        return out

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.age_s is not None:
            out["age_s"] = round(self.age_s, 3)
        if self.saved_usd is not None:
            out["saved_usd"] = self.saved_usd
        if self.coalesced:
            out["coalesced"] = True
        if self.similarity is not None:
            out["semantic"], out["similarity"] = True, round(self.similarity, 4)
        if self.origin is not None:  # who produced the answer first
            out["upstream"], out["target"] = self.origin.upstream, self.origin.model
        return out


@dataclass(slots=True)
class CachePlan:
    key: CacheKey
    lookup: bool  # False: refresh (Cache-Control: no-cache), the fresh answer is still stored
    ttl_s: float
    max_age_s: float | None
    leading: asyncio.Future | None = None  # set while this request is the one at the upstream
    # semantic routes: (bucket, last user turn, similarity threshold); the turn's vector once embedded
    semantic: tuple[str, str, float] | None = None
    vector: Any = None
    signature: tuple | None = None  # the last turn's guard signature (gateway/cache/semantic.py)


class ResponseCache:
    def __init__(self, settings: CacheSettings, store: CacheStore, metrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.max_entry_bytes = int(settings.max_entry_kb * 1024)
        self._inflight: dict[str, asyncio.Future] = {}
        self.semantic = SemanticIndex(settings.semantic_max_entries)
        # After a store failure the store is left alone for a while: a Redis that does not answer
        # would otherwise cost every request its connect timeout, twice (lookup and store).
        self._down_until = 0.0

    # ---- may this request use the cache? --------------------------------------------------------
    def plan(self, ex: Exchange, route, pipeline, headers) -> CachePlan | None:
        """The plan for a cacheable request, else None (and ex.cache says why it was bypassed)."""
        reason = None
        option = ex.options.cache
        mode, max_age = cache_control(headers.get("Cache-Control"))
        if option is not None and option.mode != "default":
            mode = option.mode
        if option is not None and option.max_age_s is not None:
            max_age = option.max_age_s
        if not route.cfg.cache.enabled:
            reason = "route"
        elif not pipeline.cache.enabled:
            reason = "policy"
        elif mode == "bypass":
            reason = "request"
        elif not (pipeline.cache.nondeterministic or deterministic(ex.body)):
            reason = "nondeterministic"
        if reason is not None:
            ex.cache = CacheOutcome("bypass", reason)
            self.metrics.child(self.metrics.cache_requests, "bypass").inc()
            return None
        scope = scope_of(self.settings.scope, ex.key_name, ex.group)
        opts = ex.options
        context = ([[d.id, d.text] for d in opts.context] if opts.context else None, opts.mock)
        prompt_hash = ex.prompt.hash if ex.prompt is not None else None
        key = CacheKey(request_key(scope, ex.endpoint, ex.model, prompt_hash, ex.body, context), scope, ex.model)
        ttl = (option.ttl_s if option is not None and option.ttl_s is not None
               else route.cfg.cache.ttl_s or self.settings.ttl_s)
        plan = CachePlan(key, lookup=mode != "refresh", ttl_s=ttl, max_age_s=max_age)
        if route.cfg.cache.semantic and (turn := last_user_turn(ex.body)) is not None:
            bucket = request_key(scope, ex.endpoint, ex.model, prompt_hash, without_turn(ex.body, turn[0]), context)
            plan.semantic = (bucket, turn[1], route.cfg.cache.similarity)
        return plan

    # ---- lookup ---------------------------------------------------------------------------------
    async def lookup(self, ex: Exchange, plan: CachePlan) -> dict[str, Any] | None:
        """The stored answer's record for a hit, else None (a miss: this request goes upstream; if
        it is the first of identical ones in flight, the others wait for its answer)."""
        if plan.lookup:
            record = await self._get(plan.key, plan.max_age_s)
            if record is not None:
                return record
            if plan.semantic is not None:
                record = await self._semantic_get(ex, plan)
                if record is not None:
                    return record
            wait = self.settings.coalesce_wait_s
            leader = self._inflight.get(plan.key.hash)
            if leader is not None and wait > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(leader), wait)
                except TimeoutError:
                    pass  # the first one is slow: this one goes upstream itself
                else:
                    record = await self._get(plan.key, plan.max_age_s)
                    if record is not None:
                        ex.state["cache_coalesced"] = True
                        return record
        if plan.key.hash not in self._inflight and self.settings.coalesce_wait_s > 0:
            plan.leading = self._inflight[plan.key.hash] = asyncio.get_running_loop().create_future()
        ex.cache = CacheOutcome("miss")
        self.metrics.child(self.metrics.cache_requests, "miss").inc()
        return None

    async def _get(self, key: CacheKey, max_age_s: float | None) -> dict[str, Any] | None:
        now = time.time()
        if time.monotonic() < self._down_until:
            self.metrics.child(self.metrics.cache_errors, "skipped").inc()
            return None
        try:
            entry = await self.store.get(key, now)
        except Exception as e:  # noqa: BLE001 - a failing store means no cache, never a failed request
            self._failed("get", e)
            return None
        if entry is None:
            return None
        if max_age_s is not None and now - entry.stored_at > max_age_s:
            return None
        try:
            record = orjson.loads(entry.body)
            record["completion"]["choices"]  # noqa: B018 - the one field every hit needs
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.metrics.child(self.metrics.cache_errors, "corrupt").inc()
            try:
                await self.store.delete(key)
            except Exception as e:  # noqa: BLE001
                self._failed("delete", e)
            return None
        record["age_s"] = max(0.0, now - entry.stored_at)
        return record

    async def _embed_turn(self, ex: Exchange, plan: CachePlan) -> bool:
        """The last user turn's vector and guard signature on `plan` (once); False if the model failed."""
        if plan.vector is not None:
            return True
        from gateway.models import embedder

        text = plan.semantic[1]
        try:
            plan.vector = (await embedder.encode_async([text], ex.state.setdefault(embedder.STATE_KEY, {})))[0]
        except Exception as e:  # noqa: BLE001 - no embedding, no semantic lookup or index; the request goes on
            # counted, but unlike a store failure it does not make the requests after it skip the store
            self.metrics.child(self.metrics.cache_errors, "embed").inc()
            log.warning("cache: the semantic embedding failed (%s); this request is looked up exactly only",
                        type(e).__name__)
            plan.semantic = None  # exact only from here on: storing its answer must not try the model again
            return False
        plan.signature = signature(text)
        return True

    async def _semantic_get(self, ex: Exchange, plan: CachePlan) -> dict[str, Any] | None:
        if not await self._embed_turn(ex, plan):
            return None
        bucket, _, threshold = plan.semantic
        found = self.semantic.search(bucket, plan.vector, plan.signature, threshold)
        if found is None:
            return None
        key, similarity = found
        record = await self._get(key, plan.max_age_s)
        if record is None:  # expired or evicted from the store: the index forgets it too
            self.semantic.remove(key.hash)
            return None
        ex.state["cache_similarity"] = similarity
        return record

    def done(self, plan: CachePlan) -> None:
        """The request that led a miss is over (stored or not): identical ones waiting may look again."""
        fut = plan.leading
        if fut is not None:
            plan.leading = None
            if self._inflight.get(plan.key.hash) is fut:
                del self._inflight[plan.key.hash]
            if not fut.done():
                fut.set_result(None)

    # ---- a hit ----------------------------------------------------------------------------------
    def serve(self, ex: Exchange, rt, record: dict[str, Any]) -> dict[str, Any]:
        """Account the hit on `ex` and return the stored completion (a fresh copy, this request's
        id in the `gateway` object; restore and response checks follow as for an upstream answer)."""
        origin = Attempt(record.get("upstream") or "", record.get("served_model") or "", "cache", 0.0)
        saved = None
        stored_usage = record.get("usage") or {}
        price = rt.prices.lookup(origin.upstream, origin.model) if origin.upstream else None
        if price is not None:  # priced as the original answer, at today's price
            saved = cost_usd(price, Usage(int(stored_usage.get("input", 0)), int(stored_usage.get("output", 0)),
                                          cached=int(stored_usage.get("cached", 0)),
                                          cache_write=int(stored_usage.get("cache_write", 0)),
                                          reasoning=int(stored_usage.get("reasoning", 0))))
        elif isinstance(record.get("cost_usd"), (int, float)):
            saved = float(record["cost_usd"])
        ex.cache = CacheOutcome("hit", age_s=record.get("age_s"), saved_usd=saved, origin=origin,
                                coalesced=bool(ex.state.get("cache_coalesced")),
                                similarity=ex.state.get("cache_similarity"))
        ex.usage = Usage(0, 0, source="cache")
        ex.cost_usd = 0.0
        m = self.metrics
        m.child(m.cache_requests, "hit").inc()
        if saved:
            m.child(m.cache_saved, ex.key_name or "-").inc(saved)
        return record["completion"]

    # ---- a miss's answer ------------------------------------------------------------------------
    async def store_answer(self, ex: Exchange, plan: CachePlan, completion: bytes, complete: bool) -> None:
        """Store the upstream's raw answer (`completion`: its JSON as received; `complete`:
        answer_complete() of it) if the request went well and the response checks let it through
        unchanged."""
        m = self.metrics
        if not (complete and _went_well(ex)):
            m.child(m.cache_stored, "not_storable").inc()
            return
        if time.monotonic() < self._down_until:
            m.child(m.cache_errors, "skipped").inc()
            return
        served, usage = ex.served_by, ex.usage
        body = orjson.dumps({
            "completion": orjson.Fragment(completion),
            "upstream": served.upstream, "served_model": served.model,
            "usage": {"input": usage.input, "output": usage.output, "cached": usage.cached,
                      "reasoning": usage.reasoning, "cache_write": usage.cache_write} if usage is not None else None,
            "cost_usd": ex.cost_usd})
        if len(body) > self.max_entry_bytes:
            m.child(m.cache_stored, "too_large").inc()
            return
        now = time.time()
        try:
            await self.store.put(plan.key, Entry(plan.key.scope, plan.key.model, now, now + plan.ttl_s, body))
        except Exception as e:  # noqa: BLE001 - the client has its answer; only the cache misses out
            self._failed("put", e)
            return
        m.child(m.cache_stored, "stored").inc()
        # a refresh skipped the lookup, so its turn is embedded only now
        if plan.semantic is not None and await self._embed_turn(ex, plan):
            self.semantic.add(plan.semantic[0], plan.vector, plan.signature, plan.key)

    # ---- housekeeping ---------------------------------------------------------------------------
    async def clear(self, scope: str | None = None, model: str | None = None) -> int:
        self.semantic.clear(scope, model)
        return await self.store.clear(scope, model)

    def refresh_gauges(self) -> None:
        stats = self.store.stats()
        if stats.get("entries") is not None:
            self.metrics.cache_entries.set(stats["entries"])
            self.metrics.cache_bytes.set(stats["bytes"] or 0)

    def _failed(self, op: str, e: BaseException) -> None:
        self.metrics.child(self.metrics.cache_errors, op).inc()
        first = time.monotonic() >= self._down_until
        self._down_until = time.monotonic() + STORE_RETRY_S
        if first:  # once per outage, not once per request
            log.warning("cache %s failed (%s); requests go on uncached, the store is tried again in %.0f s",
                        op, type(e).__name__, STORE_RETRY_S)

    async def close(self) -> None:
        for fut in self._inflight.values():
            if not fut.done():
                fut.set_result(None)
        self._inflight.clear()
        await self.store.close()


def answer_complete(completion: dict[str, Any]) -> bool:
    """Every choice of the upstream's answer finished normally (taken before response checks change it)."""
    choices = completion.get("choices")
    return bool(choices) and all(isinstance(c, dict) and c.get("finish_reason") in _COMPLETE for c in choices)


def _went_well(ex: Exchange) -> bool:
    """Served by an upstream, no error, and no response check blocked, redacted or failed."""
    if ex.served_by is None or ex.stream_error or ex.error:
        return False
    return not any(r.phase == "response" and (r.status != "ok" or r.verdict.action in (Action.BLOCK, Action.REDACT))
                   for r in ex.results)
