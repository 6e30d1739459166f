-- Ids of any shape: the service's own tables keep the platform's ids as
-- text (they were uuid, which refused platforms whose ids are not UUIDs).
-- The partial unique index on cleanup_jobs.instance_id is rebuilt with it.
ALTER TABLE cleanup_jobs ALTER COLUMN instance_id TYPE text USING instance_id::text;
ALTER TABLE alert_occurrences ALTER COLUMN instance_id TYPE text USING instance_id::text;
ALTER TABLE stale_exporter_events ALTER COLUMN project_id TYPE text USING project_id::text;
ALTER TABLE stale_exporter_events ALTER COLUMN instance_id TYPE text USING instance_id::text;

-- A removal is pinned to what its check judged: the container's full id as
-- the engine gave it (the row may hold a name or a prefix, which can come to
-- name another container) and the instance's latest sign of life then. Set
-- with the instance's mark removing; a resumed job acts on nothing else.
ALTER TABLE cleanup_jobs ADD COLUMN IF NOT EXISTS target_container_id text;
ALTER TABLE cleanup_jobs ADD COLUMN IF NOT EXISTS judged_last_alive timestamptz;
-- A job whose check could not tell (engine or store unreachable) is tried
-- again after a backoff, not before.
ALTER TABLE cleanup_jobs ADD COLUMN IF NOT EXISTS not_before timestamptz;
CREATE INDEX IF NOT EXISTS cleanup_jobs_finished_at ON cleanup_jobs (finished_at) WHERE state = 'done';

-- Repeats of an alert occurrence keep it alive for retention: an occurrence
-- is forgotten only once Alertmanager stopped sending it.
ALTER TABLE alert_occurrences ADD COLUMN IF NOT EXISTS last_seen_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS alert_occurrences_last_seen_at ON alert_occurrences (last_seen_at);
CREATE INDEX IF NOT EXISTS stale_exporter_events_created_at ON stale_exporter_events (created_at);

-- Every engine an exporter has watched, with its heartbeat. An exporter in
-- --docker.claim-unowned=auto judges unowned instances only while no other
-- engine is registered here: a 404 proves a container gone only on the
-- engine that owned it.
CREATE TABLE IF NOT EXISTS stale_exporter_engines (
    name       text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);

-- A job's result carries a stable code beside its reason text (the reason
-- is for people, the code for programs and the skip counter).
ALTER TABLE cleanup_jobs ADD COLUMN IF NOT EXISTS reason_code text NOT NULL DEFAULT '';
