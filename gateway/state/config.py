"""The `state:` section of gateway.yaml: which backends hold rate-limit and budget counters (in-process
or Redis) and the ledger (SQLite in the state directory, or PostgreSQL)."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field


class StateError(RuntimeError):
    """A shared backend is unusable at start-up (unreachable, wrong password, newer schema, ...): the
    message names the gateway.yaml field to fix; never a traceback, never a silent fall-back."""


class StateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counters: Literal["embedded", "redis"] = Field(default="embedded", description=(
        "embedded: in this process (one worker); redis: shared by every worker and replica"))
    redis_url_env: str = Field(default="GATEWAY_REDIS_URL", min_length=1, description=(
        "env var holding the Redis URL (redis://[:password@]host:6379/0); the URL is never logged"))
    key_prefix: str = Field(default="gw", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                            description="prefix of every Redis key, so several gateways can share one Redis")
    on_backend_error: Literal["open", "closed"] = Field(default="open", description=(
        "Redis unreachable: open = admit without counting (logged, gateway_state_backend_errors_total); "
        "closed = refuse with 503"))
    reservation_ttl_s: float = Field(default=600, gt=0, le=86400, description=(
        "a budget reservation whose request never settled (its replica died) stops counting after this"))
    timeout_s: float = Field(default=1.0, gt=0, le=30, description=(
        "per Redis call (a timeout counts as Redis down); a PostgreSQL connection attempt gets 5x this"))
    ledger: Literal["sqlite", "postgres"] = Field(default="sqlite", description=(
        "sqlite: request rows, feedback and the tabular prediction log in files in the state directory (one "
        "machine); postgres: in PostgreSQL, shared by every worker and replica"))
    postgres_url_env: str = Field(default="GATEWAY_POSTGRES_URL", min_length=1, description=(
        "env var holding the PostgreSQL URL (postgresql://user[:password]@host:5432/db); never logged"))
    postgres_schema: str = Field(default="gateway", min_length=1, max_length=63, pattern=r"^[a-z_][a-z0-9_]*$",
                                 description="PostgreSQL schema holding the gateway's tables (created if missing)")
    migrate_on_start: bool = Field(default=True, description=(
        "apply pending PostgreSQL migrations when the gateway starts (false: run `gateway db migrate` first; "
        "a gateway finding an older schema then refuses to start)"))

    def redis_url(self) -> str | None:
        return os.environ.get(self.redis_url_env) or None

    def postgres_url(self) -> str | None:
        return os.environ.get(self.postgres_url_env) or None


def redacted(url: str) -> str:
    """The URL with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
