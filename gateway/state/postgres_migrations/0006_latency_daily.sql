-- Latency histograms per UTC day, as SQLite ledger version 9 (gateway/metering/rollups.py): the console's
-- month in days reads 24x fewer rows. Backfilled from the hourly histograms.
CREATE TABLE latency_daily (
    day bigint NOT NULL, dim text NOT NULL, value text NOT NULL, bucket integer NOT NULL, n bigint NOT NULL,
    PRIMARY KEY (dim, day, value, bucket)
);
INSERT INTO latency_daily (day, dim, value, bucket, n)
SELECT hour / 24, dim, value, bucket, SUM(n) FROM latency_hourly GROUP BY 1, 2, 3, 4;
