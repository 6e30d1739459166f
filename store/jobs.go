package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// Job states and results, the values SQL uses too (migrations/0002's default
// and partial index name pending and done).
const (
	JobPending = "pending"
	JobRunning = "running"
	JobDone    = "done"
)

// Job results.
const (
	ResultRemoved = "removed"
	ResultSkipped = "skipped"
	ResultFailed  = "failed"
)

// ErrLeaseLost is returned when a job was taken over by another worker
// because this one held it longer than its lease.
var ErrLeaseLost = errors.New("job lease lost")

// ErrStatusChanged is returned when an instance's status or container
// changed since it was checked.
var ErrStatusChanged = errors.New("instance changed since it was checked")

// Job is one cleanup request of one instance.
type Job struct {
	ID          int64
	InstanceID  string
	ContainerID string
	Trigger     string
	RequestedBy string
	State       string
	Result      string
	Reason      string
	// PreviousStatus is set when this job marked the instance removing.
	PreviousStatus string
	// DockerHost is the engine that owns the instance: only its exporter
	// carries the job out. "" for an unowned instance.
	DockerHost string
	// Attempts fences a job's writes: only the latest claim may finish it.
	Attempts   int
	CreatedAt  time.Time
	FinishedAt time.Time
}

// JobRequest asks for a cleanup.
type JobRequest struct {
	InstanceID  string
	ContainerID string
	Trigger     string
	RequestedBy string
}

const jobColumns = `id, instance_id::text, container_id, trigger, requested_by, state, coalesce(result, ''),
	reason, coalesce(previous_status, ''), coalesce(docker_host, ''), attempts, created_at, coalesce(finished_at, 'epoch')`

func scanJob(row pgx.Row) (Job, error) {
	var j Job
	err := row.Scan(&j.ID, &j.InstanceID, &j.ContainerID, &j.Trigger, &j.RequestedBy, &j.State, &j.Result,
		&j.Reason, &j.PreviousStatus, &j.DockerHost, &j.Attempts, &j.CreatedAt, &j.FinishedAt)
	if j.FinishedAt.Equal(time.Unix(0, 0)) {
		j.FinishedAt = time.Time{}
	}
	return j, err
}

func collectJobs(rows pgx.Rows, err error) ([]Job, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var jobs []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EnqueueJob adds a pending job unless one is already in flight for the
// instance; then it returns that one with created false. It returns
// ErrNotFound when the instance no longer exists.
func (s *Store) EnqueueJob(ctx context.Context, req JobRequest) (job Job, created bool, err error) {
	return enqueueJob(ctx, s.pool, req, s.shape.IDTypes["instances"])
}

func enqueueJob(ctx context.Context, q querier, req JobRequest, idType string) (Job, bool, error) {
	// The in-flight job can finish between the insert and the select:
	// then the insert is tried again.
	for range 3 {
		job, err := scanJob(q.QueryRow(ctx, `INSERT INTO cleanup_jobs (instance_id, container_id, trigger, requested_by, docker_host)
			SELECT $1::text::uuid, $2, $3, $4, docker_host FROM instances WHERE id = $1::text::`+idType+`
			ON CONFLICT (instance_id) WHERE state <> '`+JobDone+`' DO NOTHING
			RETURNING `+jobColumns, req.InstanceID, req.ContainerID, req.Trigger, req.RequestedBy))
		if err == nil {
			return job, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Job{}, false, fmt.Errorf("enqueue cleanup of %s: %w", req.InstanceID, err)
		}
		job, err = scanJob(q.QueryRow(ctx, "SELECT "+jobColumns+
			" FROM cleanup_jobs WHERE instance_id = $1 AND state <> '"+JobDone+"'", req.InstanceID))
		if err == nil {
			return job, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Job{}, false, fmt.Errorf("find cleanup in flight for %s: %w", req.InstanceID, err)
		}
		var exists bool
		if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1)", req.InstanceID).Scan(&exists); err != nil {
			return Job{}, false, fmt.Errorf("enqueue cleanup of %s: %w", req.InstanceID, err)
		}
		if !exists {
			return Job{}, false, ErrNotFound
		}
	}
	return Job{}, false, fmt.Errorf("enqueue cleanup of %s: contended", req.InstanceID)
}

// ClaimJob takes the oldest job of dockerHost (and, with unowned, of
// instances no host owns) that is pending or whose worker let its lease run
// out (it crashed or was cut off), and leases it for the given time. It
// returns false when there is nothing to do.
func (s *Store) ClaimJob(ctx context.Context, lease time.Duration, dockerHost string, unowned bool) (Job, bool, error) {
	job, err := scanJob(s.pool.QueryRow(ctx, `UPDATE cleanup_jobs
		SET state = '`+JobRunning+`', attempts = attempts + 1, lease_until = now() + $1::interval,
			started_at = coalesce(started_at, now())
		WHERE id = (
			SELECT id FROM cleanup_jobs
			WHERE (docker_host = $2 OR ($3 AND docker_host IS NULL))
				AND (state = '`+JobPending+`' OR (state = '`+JobRunning+`' AND lease_until < now()))
			ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING `+jobColumns, lease, dockerHost, unowned))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("claim cleanup job: %w", err)
	}
	return job, true, nil
}

// MarkRemoving sets the instance's status to removing and records on the job
// that it did so, in one transaction. It fails with ErrStatusChanged when the
// instance no longer has the status and container it was checked with.
func (s *Store) MarkRemoving(ctx context.Context, job Job, checkedStatus string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE instances SET status = '`+stale.StatusRemoving+`', updated_at = now()
			WHERE id = $1 AND status = $2 AND container_id = $3`, job.InstanceID, checkedStatus, job.ContainerID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return ErrStatusChanged
		}
		return fenced(ctx, tx, job, "UPDATE cleanup_jobs SET previous_status = $3 WHERE id = $1 AND attempts = $2", checkedStatus)
	})
	if err != nil {
		return fmt.Errorf("mark instance %s removing: %w", job.InstanceID, err)
	}
	return nil
}

// FinishRemoved deletes the instance row, writes the event and closes the job.
func (s *Store) FinishRemoved(ctx context.Context, job Job, event Event) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fenced(ctx, tx, job, `UPDATE cleanup_jobs SET state = '`+JobDone+`', result = '`+ResultRemoved+`', reason = '',
			finished_at = now(), lease_until = NULL WHERE id = $1 AND attempts = $2`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM instances WHERE id = $1 AND status = '"+stale.StatusRemoving+"'", job.InstanceID); err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, event)
	})
	if err != nil {
		return fmt.Errorf("finish removal of %s: %w", job.InstanceID, err)
	}
	return nil
}

// FinishJob closes a job that did not remove anything. If the job had marked
// the instance removing, the instance gets its previous status back, so that
// nothing stays removing.
func (s *Store) FinishJob(ctx context.Context, job Job, result, reason string, event Event) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fenced(ctx, tx, job, `UPDATE cleanup_jobs SET state = '`+JobDone+`', result = $3, reason = $4,
			finished_at = now(), lease_until = NULL WHERE id = $1 AND attempts = $2`, result, reason); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE instances i SET status = j.previous_status, updated_at = now()
			FROM cleanup_jobs j
			WHERE j.id = $1 AND j.previous_status IS NOT NULL AND i.id = j.instance_id::text::`+s.shape.IDTypes["instances"]+` AND i.status = '`+stale.StatusRemoving+`'`,
			job.ID); err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, event)
	})
	if err != nil {
		return fmt.Errorf("finish cleanup job %d: %w", job.ID, err)
	}
	return nil
}

// fenced runs a job update whose first two parameters are the job id and
// attempt, failing with ErrLeaseLost when a later claim took the job over.
func fenced(ctx context.Context, tx pgx.Tx, job Job, sql string, args ...any) error {
	tag, err := tx.Exec(ctx, sql, append([]any{job.ID, job.Attempts}, args...)...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return ErrLeaseLost
	}
	return nil
}

// Jobs reads jobs by id.
func (s *Store) Jobs(ctx context.Context, ids []int64) ([]Job, error) {
	jobs, err := collectJobs(s.pool.Query(ctx, "SELECT "+jobColumns+" FROM cleanup_jobs WHERE id = ANY($1) ORDER BY id", ids))
	if err != nil {
		return nil, fmt.Errorf("read cleanup jobs: %w", err)
	}
	return jobs, nil
}

// RecentJobs reads the latest jobs, newest first.
func (s *Store) RecentJobs(ctx context.Context, limit int) ([]Job, error) {
	jobs, err := collectJobs(s.pool.Query(ctx, "SELECT "+jobColumns+" FROM cleanup_jobs ORDER BY id DESC LIMIT $1", limit))
	if err != nil {
		return nil, fmt.Errorf("read recent cleanup jobs: %w", err)
	}
	return jobs, nil
}

// LastRemoval returns the job that removed an instance, if any.
func (s *Store) LastRemoval(ctx context.Context, instanceID string) (Job, bool, error) {
	job, err := scanJob(s.pool.QueryRow(ctx, "SELECT "+jobColumns+` FROM cleanup_jobs
		WHERE instance_id = $1 AND result = '`+ResultRemoved+`' ORDER BY id DESC LIMIT 1`, instanceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("read removal of %s: %w", instanceID, err)
	}
	return job, true, nil
}

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
		tag, err := tx.Exec(ctx, `INSERT INTO alert_occurrences (fingerprint, starts_at, instance_id)
			VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, occ.Fingerprint, occ.StartsAt, occ.InstanceID)
		if err != nil {
			return err
		}
		if recorded = tag.RowsAffected() == 1; !recorded {
			return nil
		}
		if err := s.insertEvent(ctx, tx, event); err != nil {
			return err
		}
		if cleanup != nil {
			job, _, err = enqueueJob(ctx, tx, *cleanup, s.shape.IDTypes["instances"])
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
