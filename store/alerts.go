package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AlertOccurrence identifies one firing of one alert.
type AlertOccurrence struct {
	Fingerprint string
	StartsAt    time.Time
	InstanceID  string
}

// RecordAlert stores an alert occurrence once. The first time, it also
// writes the event and, if cleanup is non-nil, enqueues (or joins) a cleanup,
// all in one transaction. recorded is false for a repeat.
func (s *Store) RecordAlert(ctx context.Context, occ AlertOccurrence, event Event, cleanup *JobRequest) (recorded bool, job Job, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A repeat renews last_seen_at, so that retention forgets an
		// occurrence only once Alertmanager stopped sending it; xmax = 0
		// tells an insert from that update.
		if err := tx.QueryRow(ctx, `INSERT INTO alert_occurrences (fingerprint, starts_at, instance_id)
			VALUES ($1, $2, $3) ON CONFLICT (fingerprint, starts_at) DO UPDATE SET last_seen_at = now()
			RETURNING xmax = 0`, occ.Fingerprint, occ.StartsAt, occ.InstanceID).Scan(&recorded); err != nil {
			return err
		}
		if !recorded {
			return nil
		}
		if err := s.insertEvent(ctx, tx, event); err != nil {
			return err
		}
		if cleanup != nil {
			job, _, err = s.enqueueJob(ctx, tx, *cleanup)
			if errors.Is(err, ErrNotFound) {
				return nil // removed already: the occurrence is recorded, nothing to clean
			}
		}
		return err
	})
	if err != nil {
		return false, Job{}, fmt.Errorf("record alert %s: %w", occ.Fingerprint, err)
	}
	return recorded, job, nil
}
