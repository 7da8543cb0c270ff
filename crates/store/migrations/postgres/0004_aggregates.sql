-- What the event log adds up to, maintained by the aggregator.

-- Each unit's first exposure to a flag decides its variant ("first exposure
-- wins"); a unit later seen in another variant is marked, so analyses can
-- report it instead of silently mixing variants.
CREATE TABLE exposures (
    environment TEXT NOT NULL REFERENCES environments (key),
    flag        TEXT NOT NULL,
    unit        TEXT NOT NULL,
    variant     TEXT NOT NULL,
    first_at_ms BIGINT NOT NULL,
    conflicting BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (environment, flag, unit)
);

-- Running per-unit totals of each metric, per flag and variant: x is the
-- metric's value (a ratio's numerator), y a ratio's denominator (or the
-- number of values). Every fold adds to them, so totals written by several
-- processes add up exactly.
CREATE TABLE unit_totals (
    environment TEXT NOT NULL REFERENCES environments (key),
    flag        TEXT NOT NULL,
    variant     TEXT NOT NULL,
    metric      TEXT NOT NULL,
    unit        TEXT NOT NULL,
    x           DOUBLE PRECISION NOT NULL,
    y           DOUBLE PRECISION NOT NULL,
    events      BIGINT NOT NULL,
    PRIMARY KEY (environment, flag, metric, variant, unit)
);

-- The last event batch folded into the aggregates, written in the same
-- transaction as the aggregates: every batch is counted exactly once.
CREATE TABLE aggregation_progress (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    last_batch_id BIGINT NOT NULL
);
INSERT INTO aggregation_progress (id, last_batch_id) VALUES (1, 0);
