-- Where events go when the platform's event_log does not fit the contract
-- (store/contract.go): the same columns, in a table of this service's own.
CREATE TABLE IF NOT EXISTS stale_exporter_events (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    severity    text NOT NULL,
    source      text NOT NULL,
    message     text NOT NULL,
    project_id  uuid,
    instance_id uuid,
    details     jsonb
);
