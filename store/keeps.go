package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// KeepInstance keeps an instance from being stale until a time (forever when
// it is zero), replacing a keep it had, with an event naming who asked and
// why, in one transaction. It returns ErrNotFound for an unknown instance.
func (s *Store) KeepInstance(ctx context.Context, id string, keep stale.Keep) error {
	in, err := s.Instance(ctx, id)
	if err != nil {
		return err
	}
	until := "forever"
	if !keep.Forever() {
		until = "until " + keep.Until.UTC().Format(time.RFC3339)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO stale_exporter_keeps (instance_id, until, kept_by, reason) VALUES ($1, $2, $3, $4)
			ON CONFLICT (instance_id) DO UPDATE SET until = EXCLUDED.until, kept_by = EXCLUDED.kept_by, reason = EXCLUDED.reason,
			created_at = now()`, in.ID, nullTime(keep.Until), keep.By, keep.Reason); err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, Event{
			Severity: SeverityInfo, ProjectID: in.ProjectID, InstanceID: in.ID,
			Message: fmt.Sprintf("instance %s of %s/%s kept %s by %s: %s", in.ID, in.ProjectName, in.StageName, until, keep.By, keep.Reason),
			Details: map[string]any{"kept_by": keep.By, "keep_reason": keep.Reason, "kept_until": until},
		})
	})
	if err != nil {
		return fmt.Errorf("keep instance %s: %w", id, err)
	}
	return nil
}

// ErrNoKeep is returned when lifting the keep of an instance that has none
// in force.
var ErrNoKeep = errors.New("no keep in force")

// UnkeepInstance lifts an instance's keep, with an event naming who asked.
// The keep is ended now rather than forgotten: the grace of an automatic
// cleanup then counts from its end, so that people are told again. It
// returns ErrNotFound for an unknown instance, ErrNoKeep when none holds.
func (s *Store) UnkeepInstance(ctx context.Context, id, by string) error {
	in, err := s.Instance(ctx, id)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE stale_exporter_keeps SET until = now()
			WHERE instance_id = $1 AND (until IS NULL OR until > now())`, in.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNoKeep
		}
		return s.insertEvent(ctx, tx, Event{
			Severity: SeverityInfo, ProjectID: in.ProjectID, InstanceID: in.ID,
			Message: fmt.Sprintf("keep of instance %s of %s/%s lifted by %s", in.ID, in.ProjectName, in.StageName, by),
			Details: map[string]any{"lifted_by": by},
		})
	})
	if err != nil {
		return fmt.Errorf("lift the keep of instance %s: %w", id, err)
	}
	return nil
}
