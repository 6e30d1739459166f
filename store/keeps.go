package store

import (
	"context"
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

// UnkeepInstance lifts an instance's keep, with an event naming who asked.
// It returns ErrNotFound when the instance is unknown or has no keep.
func (s *Store) UnkeepInstance(ctx context.Context, id, by string) error {
	in, err := s.Instance(ctx, id)
	if err != nil {
		return err
	}
	if in.Keep == nil {
		return fmt.Errorf("instance %s has no keep: %w", id, ErrNotFound)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM stale_exporter_keeps WHERE instance_id = $1", in.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
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
