-- Environments, flags and segments with their full version history, tokens
-- (hashed), and the audit log. Times are Unix milliseconds; flag and segment
-- specs are JSON text (text, not a JSON type, so that key order survives:
-- the order of a split's variants decides which units get which variant).

CREATE TABLE environments (
    key           TEXT PRIMARY KEY,
    description   TEXT NOT NULL DEFAULT '',
    revision      BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE flags (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (environment, key)
);

-- One row per change; `spec` is NULL for the version that deleted the flag.
CREATE TABLE flag_versions (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT,
    author        TEXT NOT NULL,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, key, version)
);

CREATE TABLE segments (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (environment, key)
);

CREATE TABLE segment_versions (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT,
    author        TEXT NOT NULL,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, key, version)
);

CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('admin', 'client')),
    environment   TEXT REFERENCES environments (key),
    hash          TEXT NOT NULL UNIQUE,
    hint          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    environment TEXT,
    target_kind TEXT NOT NULL,
    target_key  TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    reason      TEXT
);

CREATE INDEX audit_target ON audit (target_kind, target_key, id);
