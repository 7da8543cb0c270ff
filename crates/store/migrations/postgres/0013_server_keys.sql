-- Secret keys the server makes for itself on first use (the dashboard's
-- session key signs session cookies), kept in the store so that every
-- replica on one database, and the same server after a restart, agrees on
-- them. `secret` is lowercase hex of random bytes.
CREATE TABLE server_keys (
    name          TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
