-- Experiment definitions with their full version history, kept like flags,
-- segments and metrics: `spec` is the experiment as written in the config
-- file, as JSON text.

CREATE TABLE experiments (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (environment, key)
);

-- One row per change; `spec` is NULL for the version that deleted the experiment.
CREATE TABLE experiment_versions (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT,
    author        TEXT NOT NULL,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, key, version)
);
