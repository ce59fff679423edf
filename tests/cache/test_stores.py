"""The cache stores: the embedded LRU's caps and its SQLite persistence; the Redis store (real Redis)
with expiry, prefixes and clearing by key and model."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from gateway.cache.store import CacheKey, Entry
from gateway.state.embedded_cache import EmbeddedCache
from tests.helpers import REDIS_URL


def entry(scope="key:a", model="m", ttl=60.0, body=b'{"completion": {"choices": []}}') -> Entry:
    now = time.time()
    return Entry(scope, model, now, now + ttl, body)


def k(h: str, scope="key:a", model="m") -> CacheKey:
    return CacheKey(h, scope, model)


def test_the_embedded_lru_keeps_within_its_entry_and_byte_caps_dropping_the_least_recently_used():
    async def run():
        store = EmbeddedCache(max_entries=3, max_bytes=10_000)
        for h in "abc":
            await store.put(k(h), entry())
        await store.get(k("a"), time.time())  # a is now the most recently used
        await store.put(k("d"), entry())
        kept = [h for h in "abcd" if await store.get(k(h), time.time())]
        small = EmbeddedCache(max_entries=100, max_bytes=2 * (1000 + 200))
        for h in "xyz":
            await small.put(k(h), entry(body=b"x" * 1000))
        return kept, small.stats()

    kept, stats = asyncio.run(run())
    assert kept == ["a", "c", "d"]
    assert stats == {"entries": 2, "bytes": 2400}


def test_expired_entries_are_not_served_and_clear_filters_by_scope_and_model():
    async def run():
        store = EmbeddedCache(max_entries=100, max_bytes=1 << 20)
        await store.put(k("old"), entry(ttl=-1))
        await store.put(k("a1", "key:a", "m"), entry("key:a", "m"))
        await store.put(k("a2", "key:a", "n"), entry("key:a", "n"))
        await store.put(k("b1", "key:b", "m"), entry("key:b", "m"))
        expired = await store.get(k("old"), time.time())
        n1 = await store.clear("key:a", "m")
        n2 = await store.clear(None, "m")
        return expired, n1, n2, store.stats()["entries"]

    assert asyncio.run(run()) == (None, 1, 1, 1)


def test_persisted_entries_come_back_and_unreadable_rows_are_removed(tmp_path):
    path = tmp_path / "cache.db"

    async def write():
        store = EmbeddedCache(100, 1 << 20, path)
        await store.put(k("a"), entry())
        await store.put(k("gone"), entry())
        await store.delete(k("gone"))
        await store.put(k("stale"), entry(ttl=0.01))
        await store.close()

    asyncio.run(write())
    time.sleep(0.05)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO entries VALUES ('bad', 'key:a', 'm', 'yesterday', 1e12, X'00')")
    db.commit()
    db.close()
    store = EmbeddedCache(100, 1 << 20, path)
    got = asyncio.run(store.get(k("a"), time.time()))
    assert got is not None and got.body == entry().body
    assert store.stats()["entries"] == 1 and store.corrupt == 1
    asyncio.run(store.close())
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT key FROM entries")] == ["a"]


def test_a_file_that_is_not_a_database_starts_an_empty_cache(tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = EmbeddedCache(100, 1 << 20, path)
    asyncio.run(store.put(k("a"), entry()))
    assert store.stats()["entries"] == 1 and store.path is None


def test_the_redis_store_shares_entries_expires_them_and_clears_by_key_and_model(prefix):
    from gateway.state.redis_cache import RedisCache

    async def run():
        one, two = RedisCache(REDIS_URL, prefix, 1.0), RedisCache(REDIS_URL, prefix, 1.0)
        await one.put(k("h1", "key:a:b*", "m"), entry("key:a:b*", "m"))  # glob characters in a name are safe
        await one.put(k("h2", "key:a", "m"), entry("key:a", "m"))
        await one.put(k("h3", "key:a", "n"), entry("key:a", "n"))
        await one.put(k("h4", "key:c", "m"), entry("key:c", "m", ttl=0.2))
        seen = await two.get(k("h1", "key:a:b*", "m"), time.time())  # another replica reads it
        await asyncio.sleep(0.4)
        expired = await two.get(k("h4", "key:c", "m"), time.time())
        cleared = await two.clear("key:a", "m")
        left = [await two.get(k(h, s, m), time.time()) is not None
                for h, s, m in (("h1", "key:a:b*", "m"), ("h2", "key:a", "m"), ("h3", "key:a", "n"))]
        everything = await two.clear()
        await one.close()
        await two.close()
        return seen, expired, cleared, left, everything

    seen, expired, cleared, left, everything = asyncio.run(run())
    assert seen is not None and seen.body == entry().body and seen.stored_at > 0
    assert expired is None and cleared == 1 and left == [True, False, True] and everything == 2


def test_the_semantic_index_keeps_its_cap_compacts_and_clears_by_scope():
    import numpy as np

    from gateway.cache.semantic import SemanticIndex

    rng = np.random.default_rng(0)

    def unit():
        v = rng.normal(size=384).astype(np.float32)
        return v / np.linalg.norm(v)

    index = SemanticIndex(max_entries=100)
    vecs = {}
    for i in range(150):  # the 50 oldest are dropped
        vecs[i] = unit()
        index.add(f"b{i % 2}", vecs[i], ("sig",), k(f"h{i}", "key:a" if i % 3 else "key:b"))
    assert len(index) == 100
    assert index.search("b0", vecs[0], ("sig",), 0.99) is None  # evicted
    found = index.search("b0", vecs[140], ("sig",), 0.99)
    assert found is not None and found[0].hash == "h140" and found[1] > 0.999
    assert index.search("b0", vecs[140], ("other",), 0.5) is None  # same vector, other signature
    for i in range(50, 140):  # most of it removed: buckets are compacted, the rest still found
        index.remove(f"h{i}")
    assert index.search("b1", vecs[141], ("sig",), 0.99)[0].hash == "h141"
    index.clear(scope="key:b")
    assert all(index.search(f"b{i % 2}", vecs[i], ("sig",), 0.99) is None for i in range(140, 150) if i % 3 == 0)
    assert index.search("b1", vecs[143], ("sig",), 0.99)[0].hash == "h143"
