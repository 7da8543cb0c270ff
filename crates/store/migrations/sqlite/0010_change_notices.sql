-- On PostgreSQL this migration makes committed configuration and token
-- changes announce themselves to the other replicas (LISTEN/NOTIFY). The
-- embedded store has one process and nothing to announce; this file keeps
-- the two migration histories the same length, so a backup of either
-- backend restores into the other.
SELECT 1;
