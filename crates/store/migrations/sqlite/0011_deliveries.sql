-- Notification channels (`[[channels]]`) with their full version history,
-- kept like the other config items. The spec holds the channel's HMAC
-- secret: the API and export show it redacted, and its audit entries too.
CREATE TABLE channels (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (environment, key)
);

CREATE TABLE channel_versions (
    environment   TEXT NOT NULL REFERENCES environments (key),
    key           TEXT NOT NULL,
    version       BIGINT NOT NULL,
    spec          TEXT,
    author        TEXT NOT NULL,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, key, version)
);

-- The webhook deliveries to make: enqueued in the transaction of what they
-- announce, claimed by one replica at a time (a claim moves
-- next_attempt_at_ms forward over the value it read), retried with backoff.
-- status: queued | delivered | failed.
CREATE TABLE deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    environment        TEXT NOT NULL REFERENCES environments (key),
    channel            TEXT NOT NULL,
    event              TEXT NOT NULL,
    body               TEXT NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    attempts           BIGINT NOT NULL,
    status             TEXT NOT NULL,
    last_error         TEXT,
    delivered_at_ms    BIGINT
);

CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at_ms);
CREATE INDEX deliveries_by_environment ON deliveries (environment, id);
