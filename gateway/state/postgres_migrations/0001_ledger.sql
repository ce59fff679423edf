-- The ledger in PostgreSQL (state.ledger: postgres): the same tables, columns and meaning as the
-- SQLite ledger at its version 5 (gateway/metering/ledger.py), so every report reads either.
-- Rollups are kept by the writer's own statement (gateway/state/postgres.py), from the rows it
-- actually inserted: a retried batch adds nothing twice. Never edit a released file: add the next one.

CREATE TABLE requests (
    id bigserial PRIMARY KEY,
    request_id text NOT NULL UNIQUE,        -- a retried batch or a replayed journal never adds a row twice
    ts double precision NOT NULL,           -- unix seconds (UTC) when the request arrived
    endpoint text NOT NULL,
    key text, grp text, user_id text,
    model text,                             -- the public model the client asked for
    served_model text, upstream text,
    prompt_name text, prompt_version integer, prompt_hash text,
    stream integer NOT NULL,
    status integer NOT NULL,                -- HTTP status sent (499: client went away)
    error text,                             -- short error kind, never a message
    input_tokens integer NOT NULL, cached_tokens integer NOT NULL,
    output_tokens integer NOT NULL, reasoning_tokens integer NOT NULL,
    usage_source text NOT NULL,             -- upstream | estimated | none
    cost_usd double precision,              -- NULL: no price known for the served model
    price_key text,
    latency_ms double precision, upstream_ms double precision, overhead_ms double precision,
    attempts integer,
    verdicts text,                          -- JSON [[type, check, action, score, status], ...]; never text
    experiment text, variant text, unit_hash text,
    outcome text                            -- ok | failed | refused | client_gone (gateway/metering/outcome.py)
);
CREATE INDEX requests_ts ON requests (ts);
CREATE INDEX requests_key_ts ON requests (key, ts);
CREATE INDEX requests_grp_ts ON requests (grp, ts) WHERE grp IS NOT NULL;

CREATE TABLE usage_hourly (
    hour bigint NOT NULL,                   -- floor(ts / 3600)
    dim text NOT NULL,                      -- key | model | served | prompt | upstream
    value text NOT NULL,                    -- '' when the request had none
    requests bigint NOT NULL, errors bigint NOT NULL,
    input_tokens bigint NOT NULL, cached_tokens bigint NOT NULL, output_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL, priced bigint NOT NULL, unpriced bigint NOT NULL,
    estimated bigint NOT NULL, latency_ms_sum double precision NOT NULL, refused bigint NOT NULL,
    PRIMARY KEY (hour, dim, value)
);

CREATE TABLE feedback (
    dedup_key text NOT NULL,                -- the request id, or unit:<experiment>:<unit hash>
    metric text NOT NULL,
    ts double precision NOT NULL,
    experiment text NOT NULL, variant text NOT NULL, unit_hash text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (dedup_key, metric)
);

CREATE TABLE feedback_units (
    experiment text NOT NULL, metric text NOT NULL, variant text NOT NULL, unit_hash text NOT NULL,
    n bigint NOT NULL, total double precision NOT NULL, max_value double precision NOT NULL,
    first_ts double precision NOT NULL,
    PRIMARY KEY (experiment, metric, variant, unit_hash)
);

CREATE TABLE experiment_units (
    experiment text NOT NULL, variant text NOT NULL, unit_hash text NOT NULL, first_ts double precision NOT NULL,
    PRIMARY KEY (experiment, variant, unit_hash)
);
CREATE INDEX experiment_units_by_unit ON experiment_units (experiment, unit_hash);

CREATE TABLE experiment_stats (
    experiment text NOT NULL, variant text NOT NULL,
    n bigint NOT NULL, errors bigint NOT NULL, blocks bigint NOT NULL,
    latency_sum double precision NOT NULL, latency_sq double precision NOT NULL,
    cost_n bigint NOT NULL, cost_sum double precision NOT NULL, cost_sq double precision NOT NULL,
    tokens_sum double precision NOT NULL, tokens_sq double precision NOT NULL,
    PRIMARY KEY (experiment, variant)
);

-- The tabular prediction log (gateway/tabular/store.py): features, prediction, and the label when it arrives.
CREATE TABLE predictions (
    id text PRIMARY KEY,
    model text NOT NULL,
    ts double precision NOT NULL,
    features text NOT NULL,                 -- JSON object of the validated feature values
    prediction double precision,            -- number / probability of the positive class
    prediction_label text,                  -- class label when the model returns one
    label double precision,
    label_ts double precision
);
CREATE INDEX predictions_model_ts ON predictions (model, ts);
