// Package store is stale-exporter's access to the platform's PostgreSQL
// database: the schema and its migrations, the instance queries the collector
// runs on every scan, the event log, and the durable cleanup jobs.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockKey serialises migrations across replicas that start at once.
const migrationLockKey = 0x5741_4c45 // "WALE"

// Store wraps a connection pool to the platform database.
type Store struct {
	pool  *pgxpool.Pool
	shape Shape
	// where is the server's host and port, for errors (never the DSN).
	where string
}

// Open connects to the database named by dsn and checks that it answers.
// Errors never contain the DSN, which may hold a password.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := New(dsn)
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// New returns the store of a connection string without connecting: the
// pool connects when first used, so that the exporter can start while
// PostgreSQL is down. Only a string that does not parse is an error (never
// quoted: it may hold a password).
func New(dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("parse store DSN: invalid connection string")
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open store pool: %w", err)
	}
	return &Store{pool: pool, shape: defaultShape(), where: fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port)}, nil
}

// Unreachable reports whether an error says the store could not be reached
// (no connection, a connection lost, a timeout, a server starting, shutting
// down or full), which waiting may cure; anything else, such as a password
// refused, a database that does not exist or a schema that does not fit,
// is the configuration's to fix.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08001", "08004":
			// admin_shutdown, crash_shutdown, cannot_connect_now,
			// too_many_connections, connection exceptions.
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// Close releases all connections.
func (s *Store) Close() { s.pool.Close() }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to store at %s: %w", s.where, err)
	}
	return nil
}

// Migrate applies the embedded migrations that have not been applied yet,
// under an advisory lock so that replicas starting together take turns,
// then checks the platform's tables against the contract (Preflight).
func (s *Store) Migrate(ctx context.Context) error {
	// The platform's tables are checked before anything is added to them,
	// so that a misfit is named rather than failing inside a migration.
	if err := s.checkPlatformColumns(ctx); err != nil {
		return err
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	_, err := s.Preflight(ctx)
	return err
}

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must go even when ctx is done.
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS stale_exporter_migrations (
		version    text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: create migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: list migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		if err := applyMigration(ctx, conn.Conn(), name, version); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, conn *pgx.Conn, name, version string) error {
	var applied bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM stale_exporter_migrations WHERE version = $1)", version).Scan(&applied); err != nil {
		return fmt.Errorf("migrate %s: %w", version, err)
	}
	if applied {
		return nil
	}
	sql, err := migrations.ReadFile(name)
	if err != nil {
		return fmt.Errorf("migrate %s: read: %w", version, err)
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO stale_exporter_migrations (version) VALUES ($1)", version); err != nil {
			return fmt.Errorf("migrate %s: record version: %w", version, err)
		}
		return nil
	})
}

// IsInvalidData reports whether PostgreSQL refused a statement for its data
// (SQLSTATE class 22, data exception, such as a NUL byte in text; class 54,
// program limit exceeded, such as an index row too large): retrying the same
// data fails the same way, so it is bad input, not an unavailable store.
func IsInvalidData(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54")
}

// isConstraint reports whether PostgreSQL refused a statement for breaking a
// constraint (SQLSTATE class 23: not null, foreign key, check, unique).
func isConstraint(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "23")
}
