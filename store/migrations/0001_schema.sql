-- The platform's tables (mirrored: created only where they do not exist yet)
-- and the ones this service owns. Additive only: never drop or rewrite.

CREATE TABLE IF NOT EXISTS projects (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_name_key ON projects (name);

CREATE TABLE IF NOT EXISTS stages (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS stages_project_id_name_key ON stages (project_id, name);

CREATE TABLE IF NOT EXISTS instances (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stage_id      uuid NOT NULL REFERENCES stages (id) ON DELETE CASCADE,
    project_id    uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    container_id  text,
    image_tag     text,
    subdomain     text,
    npm_proxy_id  integer,
    status        text NOT NULL DEFAULT 'stopped',
    port          integer,
    last_alive_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE instances ADD COLUMN IF NOT EXISTS last_alive_at timestamptz;

-- settings: the platform's may hold a column per setting or key/value rows
-- (see store/contract.go); only a missing table is created, with its row.
DO $$
BEGIN
    IF to_regclass('settings') IS NULL THEN
        CREATE TABLE settings (
            id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
            stale_threshold_days integer NOT NULL DEFAULT 7 CHECK (stale_threshold_days > 0)
        );
        INSERT INTO settings (id) VALUES (true);
    ELSIF NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'settings' AND column_name = 'key') THEN
        ALTER TABLE settings ADD COLUMN IF NOT EXISTS stale_threshold_days integer NOT NULL DEFAULT 7;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS event_log (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    severity    text NOT NULL,
    source      text NOT NULL,
    message     text NOT NULL,
    project_id  uuid,
    instance_id uuid,
    details     jsonb
);

-- The platform's deploy flow sets status = 'running'; this keeps last_alive_at
-- true without any change to that flow.
CREATE OR REPLACE FUNCTION instances_last_alive_on_running() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'running' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'running') THEN
        NEW.last_alive_at := now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER instances_last_alive_on_running
    BEFORE INSERT OR UPDATE OF status ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_last_alive_on_running();
