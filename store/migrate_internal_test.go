package store

import (
	"context"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// The migration to text ids converts a database the earlier migrations made,
// keeping its rows: a job in flight stays in flight (the one-in-flight index
// rebuilt), occurrences stay recognised.
func TestMigrationToTextIDsKeepsTheRows(t *testing.T) {
	dsn := testenv.Database(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE stale_exporter_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		if version >= "0006" {
			break
		}
		if err := applyMigration(ctx, conn, name, version); err != nil {
			t.Fatal(err)
		}
	}
	const id = "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	for _, sql := range []string{
		`INSERT INTO cleanup_jobs (instance_id, container_id, trigger, requested_by) VALUES ($1, 'c', 'single', 'x')`,
		`INSERT INTO alert_occurrences (fingerprint, starts_at, instance_id) VALUES ('f', now(), $1)`,
		`INSERT INTO stale_exporter_events (severity, source, message, instance_id) VALUES ('info', 'stale', 'm', $1)`,
	} {
		if _, err := conn.Exec(ctx, sql, id); err != nil {
			t.Fatal(err)
		}
	}

	st, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for _, c := range []struct{ table, column string }{
		{"cleanup_jobs", "instance_id"}, {"alert_occurrences", "instance_id"}, {"stale_exporter_events", "instance_id"}, {"stale_exporter_events", "project_id"},
	} {
		var dataType string
		if err := conn.QueryRow(ctx, `SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = $2`,
			c.table, c.column).Scan(&dataType); err != nil || dataType != "text" {
			t.Errorf("%s.%s is %s (%v), want text", c.table, c.column, dataType, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND state = 'pending')
		+ (SELECT count(*) FROM alert_occurrences WHERE instance_id = $1) + (SELECT count(*) FROM stale_exporter_events WHERE instance_id = $1)`,
		id).Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows kept: %d %v, want 3", n, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO cleanup_jobs (instance_id, container_id, trigger, requested_by) VALUES ($1, 'c', 'single', 'y')`, id); err == nil {
		t.Fatal("a second job in flight for one instance was accepted: the index was not kept")
	}
}
