-- Ingested event batches: the durable log every aggregate is derived from.
-- A batch is one row, written in one statement, so a batch is stored whole or
-- not at all; `events` is the validated batch as JSON text.
CREATE TABLE event_batches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    environment     TEXT NOT NULL REFERENCES environments (key),
    idempotency_key TEXT,
    received_at_ms  BIGINT NOT NULL,
    event_count     BIGINT NOT NULL,
    events          TEXT NOT NULL
);

-- A retried batch with the same key counts once (NULL keys never collide).
CREATE UNIQUE INDEX event_batches_idempotency ON event_batches (environment, idempotency_key);
