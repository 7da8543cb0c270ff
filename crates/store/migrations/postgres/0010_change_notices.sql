-- Several replicas on one database: every committed change of an
-- environment's configuration (its revision moves) and of the tokens is
-- announced on the channel `rollgate_changes`, so every replica reloads at
-- once. NOTIFY is transactional: listeners hear it when the change commits,
-- never for a change that rolled back.
CREATE FUNCTION rollgate_notify_environment() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('rollgate_changes', 'environment:' || NEW.key);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER environments_notify
    AFTER INSERT OR UPDATE ON environments
    FOR EACH ROW EXECUTE FUNCTION rollgate_notify_environment();

CREATE FUNCTION rollgate_notify_tokens() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('rollgate_changes', 'tokens');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER tokens_notify
    AFTER INSERT OR UPDATE OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION rollgate_notify_tokens();
