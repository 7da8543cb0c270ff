-- Rollout plans with their full version history, kept like the other config
-- items; `key` is the flag the plan rolls out (one plan per flag).
CREATE TABLE rollouts (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (environment, key)
);

CREATE TABLE rollout_versions (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT,
    author        TEXT NOT NULL,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, key, version)
);
