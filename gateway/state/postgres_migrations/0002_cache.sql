-- The response cache (gateway/cache/), as SQLite ledger version 6: whether a request was a cache hit
-- or a miss, the cost a hit saved (priced as the original answer), and their hourly totals.
ALTER TABLE requests ADD COLUMN cache text;                  -- hit | miss | NULL (not cacheable, or no cache)
ALTER TABLE requests ADD COLUMN saved_usd double precision;  -- hits: what the upstream answer had cost
ALTER TABLE usage_hourly ADD COLUMN cache_hits bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN saved_usd double precision NOT NULL DEFAULT 0;
