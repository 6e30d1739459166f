-- Every change a scan's judgement reads is announced on the channel
-- stale_exporter_changes, so that an exporter reads what changed instead of
-- every row on every scan. The payload is the table, and for a row of
-- instances or of stale_exporter_keeps ':' and the instance's id; a change
-- of projects, stages, settings or of the registered engines names only its
-- table (and an engine's name) (those are few: they are read again in full). Not announced, as
-- nothing a scan judges by changes: an update of instances that touches only
-- last_alive_at or updated_at (this service's own, most frequent write), and
-- an engine's heartbeat. NOTIFY is sent at commit, and repeated payloads of
-- one transaction are sent once.
CREATE OR REPLACE FUNCTION stale_exporter_announce() RETURNS trigger AS $$
DECLARE
    row_json jsonb;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('stale_exporter_changes', TG_TABLE_NAME);
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        row_json := to_jsonb(OLD);
    ELSE
        row_json := to_jsonb(NEW);
    END IF;
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'instances'
       AND row_json - 'last_alive_at' - 'updated_at' = to_jsonb(OLD) - 'last_alive_at' - 'updated_at' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('stale_exporter_changes',
        TG_TABLE_NAME || ':' || coalesce(row_json ->> 'id', row_json ->> 'instance_id', ''));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER stale_exporter_announce
    AFTER INSERT OR UPDATE OR DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION stale_exporter_announce();
CREATE OR REPLACE TRIGGER stale_exporter_announce
    AFTER INSERT OR UPDATE OR DELETE ON stale_exporter_keeps
    FOR EACH ROW EXECUTE FUNCTION stale_exporter_announce();
CREATE OR REPLACE TRIGGER stale_exporter_announce
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION stale_exporter_announce();
CREATE OR REPLACE TRIGGER stale_exporter_announce
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stages
    FOR EACH STATEMENT EXECUTE FUNCTION stale_exporter_announce();
CREATE OR REPLACE TRIGGER stale_exporter_announce
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION stale_exporter_announce();
-- For each row: a heartbeat is an INSERT ... ON CONFLICT DO UPDATE, which
-- fires statement-level INSERT triggers every time, row-level ones only
-- when an engine is registered.
CREATE OR REPLACE TRIGGER stale_exporter_announce
    AFTER INSERT OR DELETE ON stale_exporter_engines
    FOR EACH ROW EXECUTE FUNCTION stale_exporter_announce();
