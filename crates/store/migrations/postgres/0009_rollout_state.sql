-- The controller's state of each flag's rollout (the rollout crate's
-- RolloutState as JSON), replaced by every step that changes it, in the same
-- transaction as the flag change and the incidents the step brings.
CREATE TABLE rollout_states (
    environment   TEXT NOT NULL REFERENCES environments (key),
    flag          TEXT NOT NULL,
    state         TEXT NOT NULL,
    -- Bumped by every write: a step commits only over the state it read.
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, flag)
);

-- Incidents: opened by a guard, a failed gate or a person; `evidence` is
-- JSON (metric, values per variant, interval, limit, sample sizes).
CREATE TABLE incidents (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment    TEXT NOT NULL REFERENCES environments (key),
    flag           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    title          TEXT NOT NULL,
    evidence       TEXT,
    opened_at_ms   BIGINT NOT NULL,
    opened_by      TEXT NOT NULL,
    resolved_at_ms BIGINT,
    resolution     TEXT
);

CREATE INDEX incidents_by_flag ON incidents (environment, flag, opened_at_ms);

-- Each rollout's observation window: the per-unit totals of its flag as they
-- were when the current phase started (copied in the transaction that starts
-- it). A unit's total within the phase is its total now minus this.
CREATE TABLE unit_baselines (
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
