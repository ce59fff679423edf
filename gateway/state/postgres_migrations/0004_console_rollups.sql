-- The console's rollups, as SQLite ledger version 8 (gateway/metering/rollups.py): a `group` dimension in
-- usage_hourly, latency histograms per dimension (bucket bounds: rollups.BOUNDS, checked by a test) and
-- check verdict counts and experiment sums per hour, each backfilled from the rows already in the ledger.
INSERT INTO usage_hourly (hour, dim, value, requests, errors, input_tokens, cached_tokens, output_tokens,
                          cost_usd, priced, unpriced, estimated, latency_ms_sum, refused, cache_hits, saved_usd)
SELECT floor(ts / 3600)::bigint, 'group', COALESCE(grp, ''), COUNT(*),
       SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END), SUM(input_tokens), SUM(cached_tokens),
       SUM(output_tokens), COALESCE(SUM(cost_usd), 0), COUNT(cost_usd),
       SUM(CASE WHEN cost_usd IS NULL AND usage_source != 'none' THEN 1 ELSE 0 END),
       SUM(CASE WHEN usage_source = 'estimated' THEN 1 ELSE 0 END), COALESCE(SUM(latency_ms), 0),
       SUM(CASE WHEN outcome = 'refused' THEN 1 ELSE 0 END), SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END),
       COALESCE(SUM(saved_usd), 0)
FROM requests GROUP BY 1, 3;

CREATE TABLE latency_hourly (
    hour bigint NOT NULL, dim text NOT NULL, value text NOT NULL, bucket integer NOT NULL, n bigint NOT NULL,
    PRIMARY KEY (dim, hour, value, bucket)  -- read as one dimension over a range of hours
);
CREATE INDEX usage_hourly_by_dim ON usage_hourly(dim, hour);
INSERT INTO latency_hourly (hour, dim, value, bucket, n)
SELECT floor(r.ts / 3600)::bigint, d.dim, d.value, width_bucket(r.latency_ms, ARRAY[0.25, 0.3125, 0.3906, 0.4883, 0.6104, 0.7629, 0.9537, 1.1921, 1.4901, 1.8626, 2.3283, 2.9104, 3.638, 4.5475, 5.6843, 7.1054, 8.8818, 11.1022, 13.8778, 17.3472, 21.684, 27.1051, 33.8813, 42.3516, 52.9396, 66.1744, 82.7181, 103.3976, 129.247, 161.5587, 201.9484, 252.4355, 315.5444, 394.4305, 493.0381, 616.2976, 770.372, 962.965, 1203.7062, 1504.6328, 1880.791, 2350.9887, 2938.7359, 3673.4198, 4591.7748, 5739.7185, 7174.6481, 8968.3102, 11210.3877, 14012.9846, 17516.2308, 21895.2885, 27369.1106, 34211.3883, 42764.2354, 53455.2942, 66819.1178, 83523.8972, 104404.8715, 130506.0894, 163132.6117, 203915.7646, 254894.7058, 318618.3822, 398272.9778, 497841.2222]::float8[]), COUNT(*)
FROM requests r CROSS JOIN LATERAL (VALUES ('key', COALESCE(r.key, '')), ('model', COALESCE(r.model, '')),
    ('served', COALESCE(r.served_model, '')), ('prompt', COALESCE(r.prompt_name || '@' || r.prompt_version, '')),
    ('upstream', COALESCE(r.upstream, '')), ('group', COALESCE(r.grp, ''))) AS d (dim, value)
WHERE r.latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4;

CREATE TABLE checks_hourly (
    hour bigint NOT NULL, type text NOT NULL, name text NOT NULL, action text NOT NULL, status text NOT NULL,
    label text NOT NULL,                    -- '' counts check runs; otherwise what a run found (never text)
    n bigint NOT NULL,
    PRIMARY KEY (hour, type, name, action, status, label)
);
INSERT INTO checks_hourly (hour, type, name, action, status, label, n)
SELECT floor(r.ts / 3600)::bigint, v ->> 0, v ->> 1, v ->> 2, COALESCE(v ->> 4, 'ok'), l.label, COUNT(*)
FROM requests r CROSS JOIN LATERAL jsonb_array_elements(r.verdicts::jsonb) v
CROSS JOIN LATERAL (SELECT '' AS label UNION ALL SELECT jsonb_array_elements_text(
    CASE jsonb_typeof(v -> 5) WHEN 'array' THEN v -> 5 ELSE '[]'::jsonb END)) l
WHERE r.verdicts IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6;

CREATE TABLE experiment_hourly (
    experiment text NOT NULL, variant text NOT NULL, hour bigint NOT NULL,
    n bigint NOT NULL, errors bigint NOT NULL, blocks bigint NOT NULL,
    latency_sum double precision NOT NULL, latency_sq double precision NOT NULL,
    cost_n bigint NOT NULL, cost_sum double precision NOT NULL, cost_sq double precision NOT NULL,
    tokens_sum double precision NOT NULL, tokens_sq double precision NOT NULL,
    PRIMARY KEY (experiment, variant, hour)
);
INSERT INTO experiment_hourly
SELECT experiment, variant, floor(ts / 3600)::bigint, COUNT(*), SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END),
       SUM(CASE WHEN verdicts LIKE '%"block"%' THEN 1 ELSE 0 END), SUM(COALESCE(latency_ms, 0)),
       SUM(COALESCE(latency_ms * latency_ms, 0)), COUNT(cost_usd), COALESCE(SUM(cost_usd), 0),
       COALESCE(SUM(cost_usd * cost_usd), 0), SUM(input_tokens + output_tokens),
       SUM((input_tokens + output_tokens) * 1.0 * (input_tokens + output_tokens))
FROM requests WHERE experiment IS NOT NULL GROUP BY 1, 2, 3;
