-- Several Docker hosts: the engine an instance's container runs on, set by
-- the exporter that lists it (ownership by observation); NULL until one
-- does. Each exporter reads only its own rows and the unowned ones. Jobs
-- carry the owner, so that only its exporter carries them out.
ALTER TABLE instances ADD COLUMN IF NOT EXISTS docker_host text;
CREATE INDEX IF NOT EXISTS instances_docker_host ON instances (docker_host);
ALTER TABLE cleanup_jobs ADD COLUMN IF NOT EXISTS docker_host text;
CREATE INDEX IF NOT EXISTS cleanup_jobs_claimable ON cleanup_jobs (docker_host, id) WHERE state <> 'done';
