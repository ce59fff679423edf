-- Drift summaries of the tabular prediction log (gateway/tabular/rollups.py): per model, reference
-- profile, five-minute bucket or hour, exact counts and a KLL sketch per column, so a long window is
-- drift-checked from a few dozen rows instead of millions. Written idempotently by any replica.
CREATE TABLE drift_rollups (
    model text NOT NULL,
    profile text NOT NULL,
    period integer NOT NULL,
    start double precision NOT NULL,
    rows bigint NOT NULL,
    summary text NOT NULL,
    PRIMARY KEY (model, profile, period, start)
);
-- The labelled predictions, for a window's performance without scanning every prediction in it.
CREATE INDEX predictions_labelled ON predictions (model, ts) WHERE label IS NOT NULL;
