-- Per-variant metric totals per time bucket (1 minute, 1 hour, 1 day), for
-- charts and for per-minute checks such as uptime. Statistics across units
-- use `unit_totals`, not these.
CREATE TABLE metric_buckets (
    environment TEXT NOT NULL REFERENCES environments (key),
    flag        TEXT NOT NULL,
    variant     TEXT NOT NULL,
    metric      TEXT NOT NULL,
    resolution  TEXT NOT NULL CHECK (resolution IN ('1m', '1h', '1d')),
    start_ms    BIGINT NOT NULL,
    x           DOUBLE PRECISION NOT NULL,
    y           DOUBLE PRECISION NOT NULL,
    events      BIGINT NOT NULL,
    -- The largest value seen (gauges), NULL when the metric has no values.
    max_value   DOUBLE PRECISION,
    -- A quantile sketch of the values (quantile metrics), DDSketch bytes.
    sketch      BLOB,
    PRIMARY KEY (environment, flag, metric, resolution, variant, start_ms)
);
