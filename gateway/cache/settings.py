"""Where caching is configured: `cache:` in gateway.yaml (store, sizes, scope, default TTL), `cache:`
on a model route (on/off, TTL), `cache:` in a policy file (on/off, non-deterministic requests), and
`gateway.cache` / `Cache-Control` on a request."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CacheSettings(BaseModel):
    """`cache:` in gateway.yaml."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(default=False, description=(
        "serve repeated requests from the cache (routes and policies may turn it off again)"))
    store: Literal["auto", "embedded", "redis"] = Field(default="auto", description=(
        "auto: redis when state.counters is redis (every replica shares the entries), else embedded "
        "(in this process, optionally persisted to SQLite)"))
    scope: Literal["key", "group"] = Field(default="key", description=(
        "who shares entries: one API key, or every key of a group (a key without a group: its own). "
        "Never global: one tenant's answers are never served to another"))
    ttl_s: float = Field(default=3600, gt=0, le=30 * 86400, description="how long an entry is served")
    max_entries: int = Field(default=100_000, gt=0, le=10_000_000, description="embedded store: LRU cap")
    max_mb: float = Field(default=256, gt=0, le=65536, description="embedded store: memory cap of all entries")
    max_entry_kb: float = Field(default=1024, gt=0, le=65536, description=(
        "an answer larger than this is not stored (counted as skipped)"))
    persist: bool = Field(default=False, description=(
        "embedded store: keep entries in <state-dir>/cache.db across restarts"))
    semantic_max_entries: int = Field(default=100_000, gt=0, le=10_000_000, description=(
        "semantic index: vectors kept in this process (oldest dropped first)"))
    coalesce_wait_s: float = Field(default=60, ge=0, le=3600, description=(
        "identical requests arriving while the first is still at the upstream wait this long for its "
        "answer instead of calling the upstream again (0: no coalescing)"))


class RouteCache(BaseModel):
    """`cache:` on a model route in gateway.yaml."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ttl_s: float | None = Field(default=None, gt=0, le=30 * 86400, description="overrides cache.ttl_s")
    semantic: bool = Field(default=False, description=(
        "also serve a cached answer to a request whose last user turn means the same (MiniLM cosine "
        "similarity >= `similarity`) when everything else is identical and numbers, dates, names and "
        "negation match"))
    similarity: float = Field(default=0.92, ge=0.5, le=1.0, description="semantic hit threshold (cosine)")


class PolicyCache(BaseModel):
    """`cache:` in a policy file."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # By default only deterministic requests (temperature 0, or a seed) are cached: serving the same
    # sampled answer again would change what the client asked for.
    nondeterministic: bool = False


class CacheRequest(BaseModel):
    """`gateway.cache` on a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # default: look up and store; refresh: skip the lookup, store the fresh answer (Cache-Control:
    # no-cache); bypass: neither (Cache-Control: no-store)
    mode: Literal["default", "refresh", "bypass"] = "default"
    ttl_s: float | None = Field(default=None, gt=0, le=30 * 86400)
    max_age_s: float | None = Field(default=None, ge=0, description="only serve an entry younger than this")
