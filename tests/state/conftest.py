"""A Redis key prefix of the test's own (cleaned up after it), with GATEWAY_REDIS_URL set."""

from __future__ import annotations

import os

import pytest

from tests.helpers import REDIS_URL, require_service


@pytest.fixture()
def prefix(monkeypatch):
    require_service("Redis", "127.0.0.1", 6379)
    monkeypatch.setenv("GATEWAY_REDIS_URL", REDIS_URL)
    p = "gwtest-" + os.urandom(4).hex()
    yield p
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(f"{p}:*"))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture()
def pg_schema(monkeypatch):
    """A PostgreSQL schema of the test's own on the machine's server (dropped after), with
    GATEWAY_POSTGRES_URL set; yields the schema name."""
    from tests.helpers import POSTGRES_URL

    require_service("PostgreSQL", "127.0.0.1", 5432)
    monkeypatch.setenv("GATEWAY_POSTGRES_URL", POSTGRES_URL)
    schema = "gwtest_" + os.urandom(4).hex()
    yield schema
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
