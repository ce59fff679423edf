-- Drift webhook deliveries of tabular models (gateway/tabular/store.py alert_deliveries): the outcome of
-- each alert, so the console on every replica lists them and they outlive a restart. No URL is kept.
CREATE TABLE alert_deliveries (
    model text NOT NULL,
    ts double precision NOT NULL,
    delivered integer NOT NULL,
    http_status integer,
    error text,
    attempts integer NOT NULL,
    data_drift integer NOT NULL,
    performance_degraded integer NOT NULL
);
CREATE INDEX alert_deliveries_model_ts ON alert_deliveries (model, ts);
