// Package storetest sets up a migrated store on a fresh database and writes
// the platform's rows the way the platform would, for tests.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
)

// DB is a migrated test database.
type DB struct {
	DSN   string
	Store *store.Store
	// Pool is a separate pool for the test's own reads and writes.
	Pool *pgxpool.Pool
}

// New creates a fresh database, migrates it and opens it.
func New(tb testing.TB) *DB {
	tb.Helper()
	return NewShaped(tb, "")
}

// Platform creates a fresh database holding only the platform's tables as
// platformSQL makes them, not migrated, and returns its DSN.
func Platform(tb testing.TB, platformSQL string) string {
	tb.Helper()
	dsn := testenv.Database(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, platformSQL); err != nil {
		tb.Fatalf("create the platform's tables: %v", err)
	}
	return dsn
}

// NewShaped creates a fresh database, runs platformSQL in it (the platform's
// own tables, shaped as a test needs), then migrates and opens it.
func NewShaped(tb testing.TB, platformSQL string) *DB {
	tb.Helper()
	dsn := testenv.Database(tb)
	if platformSQL != "" {
		dsn = Platform(tb, platformSQL)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		tb.Fatalf("open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return &DB{DSN: dsn, Store: st, Pool: pool}
}

// Instance describes an instance row to insert.
type Instance struct {
	Project     string
	Stage       string
	ImageTag    string
	ContainerID string
	Status      string
	// CreatedAt defaults to now.
	CreatedAt time.Time
	// LastAliveAt is left NULL when zero (the trigger may still set it).
	LastAliveAt time.Time
}

// AddInstance inserts an instance (and its project and stage if new) and
// returns its id.
func (db *DB) AddInstance(tb testing.TB, in Instance) string {
	tb.Helper()
	ctx := context.Background()
	if in.Project == "" {
		in.Project = "shop"
	}
	if in.Stage == "" {
		in.Stage = "preview"
	}
	if in.Status == "" {
		in.Status = stale.StatusStopped
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = time.Now()
	}
	var lastAlive *time.Time
	if !in.LastAliveAt.IsZero() {
		lastAlive = &in.LastAliveAt
	}
	var id string
	err := db.Pool.QueryRow(ctx, `
		WITH p AS (
			INSERT INTO projects (name) VALUES ($1)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id),
		s AS (
			INSERT INTO stages (project_id, name) SELECT id, $2 FROM p
			ON CONFLICT (project_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id, project_id)
		INSERT INTO instances (stage_id, project_id, container_id, image_tag, status, created_at, last_alive_at)
		SELECT s.id, s.project_id, $3, $4, $5, $6, $7 FROM s
		RETURNING id::text`,
		in.Project, in.Stage, in.ContainerID, in.ImageTag, in.Status, in.CreatedAt, lastAlive).Scan(&id)
	if err != nil {
		tb.Fatalf("insert instance: %v", err)
	}
	return id
}

// LastAliveAt reads an instance's last_alive_at (zero when NULL).
func (db *DB) LastAliveAt(tb testing.TB, id string) time.Time {
	tb.Helper()
	var t *time.Time
	if err := db.Pool.QueryRow(context.Background(), "SELECT last_alive_at FROM instances WHERE id = $1", id).Scan(&t); err != nil {
		tb.Fatalf("read last_alive_at: %v", err)
	}
	if t == nil {
		return time.Time{}
	}
	return *t
}

// Count runs a SELECT count(*) query.
func (db *DB) Count(tb testing.TB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("count %q: %v", query, err)
	}
	return n
}

// Exec runs a statement.
func (db *DB) Exec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
}

// HoldRow locks an instance row FOR UPDATE in a transaction of its own, as a
// platform busy with that row would, and returns the function that releases
// it. A cleanup's mark then waits: the window between its check and its
// removal is held open for as long as a test needs.
func (db *DB) HoldRow(tb testing.TB, id string) (release func()) {
	tb.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		tb.Fatalf("begin: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM instances WHERE id::text = $1 FOR UPDATE", id); err != nil {
		_ = tx.Rollback(ctx)
		tb.Fatalf("lock instance %s: %v", id, err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			if err := tx.Commit(ctx); err != nil {
				tb.Errorf("release instance %s: %v", id, err)
			}
		}
	}
	tb.Cleanup(release)
	return release
}

// WaitForLockWaiter waits until another session of the database waits for a
// row lock (a cleanup's mark behind HoldRow).
func (db *DB) WaitForLockWaiter(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if db.Count(tb, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("no session came to wait for the held row within 30s")
}
