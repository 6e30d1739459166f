-- Keeps a person set from the UI or the CLI: the instance is not stale until
-- the keep ends (until NULL: forever). A container's labels cannot change
-- after its creation, so the service keeps them in a table of its own.
CREATE TABLE IF NOT EXISTS stale_exporter_keeps (
    instance_id text PRIMARY KEY,
    until       timestamptz,
    kept_by     text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
