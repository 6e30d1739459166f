-- Tables of this service: durable cleanup jobs and the alert occurrences
-- already recorded.

CREATE TABLE IF NOT EXISTS cleanup_jobs (
    id              bigserial PRIMARY KEY,
    instance_id     uuid NOT NULL,
    container_id    text NOT NULL,
    trigger         text NOT NULL,
    requested_by    text NOT NULL,
    state           text NOT NULL DEFAULT 'pending',
    result          text,
    reason          text NOT NULL DEFAULT '',
    -- Set, in the same transaction as instances.status = 'removing', by the
    -- job that did it: a resumed job knows the mark is its own.
    previous_status text,
    attempts        integer NOT NULL DEFAULT 0,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
-- At most one job in flight per instance, across all replicas.
CREATE UNIQUE INDEX IF NOT EXISTS cleanup_jobs_one_in_flight ON cleanup_jobs (instance_id) WHERE state <> 'done';
CREATE INDEX IF NOT EXISTS cleanup_jobs_created_at ON cleanup_jobs (created_at DESC);

CREATE TABLE IF NOT EXISTS alert_occurrences (
    fingerprint text NOT NULL,
    starts_at   timestamptz NOT NULL,
    instance_id uuid,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, starts_at)
);
