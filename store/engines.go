package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Engine is one Docker engine registered with the store by its exporter.
type Engine struct {
	Name      string
	FirstSeen time.Time
	// LastSeen is the exporter's latest heartbeat (every scan).
	LastSeen time.Time
}

// heartbeatSQL registers an engine, or renews its heartbeat.
const heartbeatSQL = `INSERT INTO stale_exporter_engines (name) VALUES ($1)
	ON CONFLICT (name) DO UPDATE SET last_seen = now()`

// otherEnginesSQL counts the engines registered besides $1.
const otherEnginesSQL = `SELECT count(*) FROM stale_exporter_engines WHERE name <> $1`

// Register registers an engine (or renews its heartbeat) and returns how many
// other engines are registered.
func (s *Store) Register(ctx context.Context, name string) (others int, err error) {
	batch := &pgx.Batch{}
	batch.Queue(heartbeatSQL, name)
	batch.Queue(otherEnginesSQL, name).QueryRow(func(row pgx.Row) error { return row.Scan(&others) })
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return 0, fmt.Errorf("register engine %s: %w", name, err)
	}
	return others, nil
}

// OtherEngines counts the engines registered besides name.
func (s *Store) OtherEngines(ctx context.Context, name string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, otherEnginesSQL, name).Scan(&n); err != nil {
		return 0, fmt.Errorf("count registered engines: %w", err)
	}
	return n, nil
}

// Engines lists the registered engines by name.
func (s *Store) Engines(ctx context.Context) ([]Engine, error) {
	rows, err := s.pool.Query(ctx, "SELECT name, first_seen, last_seen FROM stale_exporter_engines ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list engines: %w", err)
	}
	engines, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Engine, error) {
		var e Engine
		return e, row.Scan(&e.Name, &e.FirstSeen, &e.LastSeen)
	})
	if err != nil {
		return nil, fmt.Errorf("list engines: %w", err)
	}
	return engines, nil
}

// ForgetEngine removes an engine's registration, with an event naming who
// asked, in one transaction. It returns ErrNotFound for an engine that is
// not registered. An exporter still watching that engine registers it again
// at its next scan.
func (s *Store) ForgetEngine(ctx context.Context, name, requestedBy string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM stale_exporter_engines WHERE name = $1", name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return s.insertEvent(ctx, tx, Event{
			Severity: SeverityWarning,
			Message:  fmt.Sprintf("registration of Docker engine %q removed by %s", name, requestedBy),
			Details:  map[string]any{"docker_host": name, "requested_by": requestedBy},
		})
	})
	if err != nil {
		return fmt.Errorf("forget engine %s: %w", name, err)
	}
	return nil
}
