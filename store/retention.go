package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pruneBatch bounds the rows one prune statement deletes, so that pruning
// a long-neglected table never holds a long lock.
const pruneBatch = 5000

// Pruned counts the rows Prune deleted, per table.
type Pruned struct {
	Jobs, Occurrences, Events, Keeps int64
}

// Prune deletes this service's own records older than before: finished
// jobs, alert occurrences Alertmanager stopped sending, and the rows of
// stale_exporter_events. The platform's event_log is left to the platform.
func (s *Store) Prune(ctx context.Context, before time.Time) (Pruned, error) {
	var p Pruned
	for _, t := range []struct {
		n   *int64
		sql string
	}{
		{&p.Jobs, `DELETE FROM cleanup_jobs WHERE id IN (SELECT id FROM cleanup_jobs
			WHERE state = '` + string(JobDone) + `' AND finished_at < $1 LIMIT $2)`},
		{&p.Occurrences, `DELETE FROM alert_occurrences WHERE (fingerprint, starts_at) IN (SELECT fingerprint, starts_at
			FROM alert_occurrences WHERE last_seen_at < $1 LIMIT $2)`},
		{&p.Events, `DELETE FROM stale_exporter_events WHERE id IN (SELECT id FROM stale_exporter_events
			WHERE created_at < $1 LIMIT $2)`},
		// A keep that ended long ago no longer decides when a grace began.
		{&p.Keeps, `DELETE FROM stale_exporter_keeps WHERE instance_id IN (SELECT instance_id FROM stale_exporter_keeps
			WHERE until < $1 LIMIT $2)`},
	} {
		for {
			tag, err := s.pool.Exec(ctx, t.sql, before, pruneBatch)
			if err != nil {
				return p, fmt.Errorf("prune records before %s: %w", before.Format(time.RFC3339), err)
			}
			*t.n += tag.RowsAffected()
			if tag.RowsAffected() < pruneBatch {
				break
			}
		}
	}
	return p, nil
}

// ExpirableJobs lists up to limit jobs created before the given time that no
// worker holds: pending (their engine's exporter never took them) or whose
// lease ran out long ago.
func (s *Store) ExpirableJobs(ctx context.Context, createdBefore time.Time, limit int) ([]Job, error) {
	jobs, err := collectJobs(s.pool.Query(ctx, "SELECT "+jobColumns+` FROM cleanup_jobs
		WHERE state <> '`+string(JobDone)+`' AND created_at < $1 AND (state = '`+string(JobPending)+`' OR lease_until < now())
		ORDER BY id LIMIT $2`, createdBefore, limit))
	if err != nil {
		return nil, fmt.Errorf("list expirable cleanup jobs: %w", err)
	}
	return jobs, nil
}

// ExpireJob closes a job nobody carried out, as FinishJob does, unless a
// worker took it since it was listed (ErrLeaseLost).
func (s *Store) ExpireJob(ctx context.Context, job Job, result JobResult, code, reason string, event Event) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fenced(ctx, tx, job, `UPDATE cleanup_jobs SET state = '`+string(JobDone)+`', result = $3, reason_code = $4, reason = $5,
			finished_at = now(), lease_until = NULL
			WHERE id = $1 AND attempts = $2 AND state <> '`+string(JobDone)+`' AND (state = '`+string(JobPending)+`' OR lease_until < now())`,
			result, code, reason); err != nil {
			return err
		}
		return s.closeJob(ctx, tx, job, event)
	})
	if err != nil {
		return fmt.Errorf("expire cleanup job %d: %w", job.ID, err)
	}
	return nil
}
