-- The incident lifecycle: open → investigating → mitigated → resolved, a
-- support level (L1, L2, L3) that escalates while nobody acknowledges, an
-- optional public text (the incident is then a known issue on /status), and
-- a timeline of what people and the controller did.
ALTER TABLE incidents ADD COLUMN status TEXT NOT NULL DEFAULT 'open';
ALTER TABLE incidents ADD COLUMN level TEXT NOT NULL DEFAULT 'L2';
-- When it reached its current level: escalation counts from here.
ALTER TABLE incidents ADD COLUMN level_since_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN acknowledged_at_ms BIGINT;
ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT;
-- NULL: private. Otherwise what /status shows, written for the public.
ALTER TABLE incidents ADD COLUMN public_text TEXT;
ALTER TABLE incidents ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;

UPDATE incidents SET
    status = CASE WHEN resolved_at_ms IS NULL THEN 'open' ELSE 'resolved' END,
    level_since_ms = opened_at_ms,
    updated_at_ms = COALESCE(resolved_at_ms, opened_at_ms);

CREATE INDEX incidents_by_status ON incidents (environment, status);

-- action: opened | acknowledged | note | status | escalated | published |
-- unpublished | resolved. detail: JSON (the new status, the levels, …).
CREATE TABLE incident_timeline (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    incident BIGINT NOT NULL REFERENCES incidents (id),
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    text     TEXT,
    detail   TEXT
);

CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident, id);

-- Scheduled channel messages (daily digest, weekly report): the scheduled
-- time last sent for, so that each is sent once, by one replica.
CREATE TABLE channel_schedules (
    environment TEXT NOT NULL REFERENCES environments (key),
    channel     TEXT NOT NULL,
    event       TEXT NOT NULL,
    last_run_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, channel, event)
);
