package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// The job vocabulary, in one place: the values the API shows and SQL
// uses too (migrations/0002's default and partial index name pending and
// done).

// JobState is where a job is.
type JobState string

// The states of a job.
const (
	JobPending JobState = "pending"
	JobRunning JobState = "running"
	JobDone    JobState = "done"
)

// JobResult is what a finished job did.
type JobResult string

// The results of a job.
const (
	ResultRemoved JobResult = "removed"
	ResultSkipped JobResult = "skipped"
	ResultFailed  JobResult = "failed"
	// ResultWouldRemove is a dry run's verdict for an instance it would
	// remove; a dry run is never stored.
	ResultWouldRemove JobResult = "would_remove"
)

// Results are every result, for the series that exist from the start.
var Results = []JobResult{ResultRemoved, ResultSkipped, ResultFailed, ResultWouldRemove}

// Trigger says who asked for a cleanup.
type Trigger string

// The triggers.
const (
	TriggerSingle  Trigger = "single"
	TriggerBulk    Trigger = "bulk"
	TriggerWebhook Trigger = "webhook"
)

// Triggers are every trigger.
var Triggers = []Trigger{TriggerSingle, TriggerBulk, TriggerWebhook}

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
	Trigger     Trigger
	RequestedBy string
	State       JobState
	Result      JobResult
	// Code is the stable name of Reason, for programs.
	Code   string
	Reason string
	// PreviousStatus is set when this job marked the instance removing.
	PreviousStatus string
	// TargetContainerID and JudgedLastAlive pin the removal, set with the
	// mark: the full id of the container the check inspected, and the
	// instance's latest sign of life the check judged.
	TargetContainerID string
	JudgedLastAlive   time.Time
	// DockerHost is the engine that owns the instance: only its exporter
	// carries the job out. "" for an unowned instance.
	DockerHost string
	// Attempts fences a job's writes: only the latest lease may finish it.
	Attempts   int
	CreatedAt  time.Time
	FinishedAt time.Time
	// DryRun marks a dry run's verdict, which is never stored (no ID).
	DryRun bool
}

// JobRequest asks for a cleanup.
type JobRequest struct {
	InstanceID  string
	ContainerID string
	Trigger     Trigger
	RequestedBy string
}

const jobColumns = `id, instance_id, container_id, trigger, requested_by, state, coalesce(result, ''), reason_code,
	reason, coalesce(previous_status, ''), coalesce(target_container_id, ''), coalesce(judged_last_alive, 'epoch'),
	coalesce(docker_host, ''), attempts, created_at, coalesce(finished_at, 'epoch')`

func scanJob(row pgx.Row) (Job, error) {
	var j Job
	err := row.Scan(&j.ID, &j.InstanceID, &j.ContainerID, &j.Trigger, &j.RequestedBy, &j.State, &j.Result, &j.Code,
		&j.Reason, &j.PreviousStatus, &j.TargetContainerID, &j.JudgedLastAlive, &j.DockerHost, &j.Attempts, &j.CreatedAt, &j.FinishedAt)
	for _, t := range []*time.Time{&j.FinishedAt, &j.JudgedLastAlive} {
		if t.Equal(time.Unix(0, 0)) {
			*t = time.Time{}
		}
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
	return s.enqueueJob(ctx, s.pool, req)
}

func (s *Store) enqueueJob(ctx context.Context, q querier, req JobRequest) (Job, bool, error) {
	key, ok := s.InstanceKey(req.InstanceID)
	if !ok {
		return Job{}, false, ErrNotFound
	}
	idType := s.shape.IDTypes["instances"]
	// The in-flight job can finish between the insert and the select:
	// then the insert is tried again.
	for range 3 {
		job, err := scanJob(q.QueryRow(ctx, `INSERT INTO cleanup_jobs (instance_id, container_id, trigger, requested_by, docker_host)
			SELECT $1, $2, $3, $4, docker_host FROM instances WHERE id = $1::text::`+idType+`
			ON CONFLICT (instance_id) WHERE state <> '`+string(JobDone)+`' DO NOTHING
			RETURNING `+jobColumns, key, req.ContainerID, req.Trigger, req.RequestedBy))
		if err == nil {
			return job, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Job{}, false, fmt.Errorf("enqueue cleanup of %s: %w", req.InstanceID, err)
		}
		job, err = scanJob(q.QueryRow(ctx, "SELECT "+jobColumns+
			" FROM cleanup_jobs WHERE instance_id = $1 AND state <> '"+string(JobDone)+"'", key))
		if err == nil {
			return job, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Job{}, false, fmt.Errorf("find cleanup in flight for %s: %w", req.InstanceID, err)
		}
		var exists bool
		if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1::text::"+idType+")", key).Scan(&exists); err != nil {
			return Job{}, false, fmt.Errorf("enqueue cleanup of %s: %w", req.InstanceID, err)
		}
		if !exists {
			return Job{}, false, ErrNotFound
		}
	}
	return Job{}, false, fmt.Errorf("enqueue cleanup of %s: contended", req.InstanceID)
}

// unownedJudgedSQL is the SQL of stale.UnownedMode.JudgesUnowned for the
// mode in parameter $mode and the exporter's engine in $host.
func unownedJudgedSQL(host, mode string) string {
	return `(` + mode + ` = 'true' OR (` + mode + ` = 'auto' AND NOT EXISTS (SELECT 1 FROM stale_exporter_engines WHERE name <> ` + host + `)))`
}

// LeaseJob takes the oldest job of dockerHost (and of instances no host owns
// while the mode judges them) that is pending and due, or whose worker let
// its lease run out (it crashed or was cut off), and leases it for the given
// time. It returns false when there is nothing to do.
func (s *Store) LeaseJob(ctx context.Context, lease time.Duration, dockerHost string, unowned stale.UnownedMode) (Job, bool, error) {
	job, err := scanJob(s.pool.QueryRow(ctx, `UPDATE cleanup_jobs
		SET state = '`+string(JobRunning)+`', attempts = attempts + 1, lease_until = now() + $1::interval,
			started_at = coalesce(started_at, now()), not_before = NULL
		WHERE id = (
			SELECT id FROM cleanup_jobs
			WHERE (docker_host = $2 OR (docker_host IS NULL AND `+unownedJudgedSQL("$2", "$3")+`))
				AND ((state = '`+string(JobPending)+`' AND (not_before IS NULL OR not_before <= now()))
					OR (state = '`+string(JobRunning)+`' AND lease_until < now()))
			ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING `+jobColumns, lease, dockerHost, string(unowned)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("lease cleanup job: %w", err)
	}
	return job, true, nil
}

// MarkRemoving sets the instance's status to removing and pins the job to
// what its check judged (the container's full id, the latest sign of life),
// in one transaction. It fails with ErrStatusChanged when the instance no
// longer has the status and container it was checked with.
func (s *Store) MarkRemoving(ctx context.Context, job Job, checkedStatus, target string, judged time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE instances SET status = '`+stale.StatusRemoving+`', updated_at = now()
			WHERE id = $1::text::`+s.shape.IDTypes["instances"]+` AND status = $2 AND coalesce(container_id, '') = $3`,
			job.InstanceID, checkedStatus, job.ContainerID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return ErrStatusChanged
		}
		return fenced(ctx, tx, job, `UPDATE cleanup_jobs SET previous_status = $3, target_container_id = $4, judged_last_alive = $5
			WHERE id = $1 AND attempts = $2`, checkedStatus, target, judged)
	})
	if err != nil {
		return fmt.Errorf("mark instance %s removing: %w", job.InstanceID, err)
	}
	return nil
}

// FinishRemoved closes the job of a removed container, writes the event and
// deletes the instance row, in one transaction, if the row still holds that
// container and is still removing. A row the platform pointed at another
// container meanwhile is the new container's: it is kept, with its previous
// status back if it was still removing. event is given whether it was kept.
func (s *Store) FinishRemoved(ctx context.Context, job Job, event func(rowKept bool) Event) error {
	idType := s.shape.IDTypes["instances"]
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fenced(ctx, tx, job, `UPDATE cleanup_jobs SET state = '`+string(JobDone)+`', result = '`+string(ResultRemoved)+`', reason = '',
			reason_code = '', finished_at = now(), lease_until = NULL WHERE id = $1 AND attempts = $2`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM instances WHERE id = $1::text::`+idType+` AND status = '`+stale.StatusRemoving+`'
			AND coalesce(container_id, '') = $2`, job.InstanceID, job.ContainerID)
		if err != nil {
			return err
		}
		kept := false
		if tag.RowsAffected() == 1 {
			// The instance is gone: so is a keep of it.
			if _, err := tx.Exec(ctx, "DELETE FROM stale_exporter_keeps WHERE instance_id = $1", job.InstanceID); err != nil {
				return err
			}
		} else {
			tag, err = tx.Exec(ctx, `UPDATE instances SET status = CASE WHEN status = '`+stale.StatusRemoving+`' THEN $2 ELSE status END,
				updated_at = now() WHERE id = $1::text::`+idType, job.InstanceID, job.PreviousStatus)
			if err != nil {
				return err
			}
			kept = tag.RowsAffected() == 1
		}
		return s.insertEvent(ctx, tx, event(kept))
	})
	if err != nil {
		return fmt.Errorf("finish removal of %s: %w", job.InstanceID, err)
	}
	return nil
}

// FinishJob closes a job that did not remove anything. If the job had marked
// the instance removing, the instance gets its previous status back, so that
// nothing stays removing.
func (s *Store) FinishJob(ctx context.Context, job Job, result JobResult, code, reason string, event Event) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := fenced(ctx, tx, job, `UPDATE cleanup_jobs SET state = '`+string(JobDone)+`', result = $3, reason_code = $4, reason = $5,
			finished_at = now(), lease_until = NULL WHERE id = $1 AND attempts = $2`, result, code, reason); err != nil {
			return err
		}
		return s.closeJob(ctx, tx, job, event)
	})
	if err != nil {
		return fmt.Errorf("finish cleanup job %d: %w", job.ID, err)
	}
	return nil
}

// closeJob gives an instance its previous status back if the job had
// marked it removing, and writes the job's event.
func (s *Store) closeJob(ctx context.Context, tx pgx.Tx, job Job, event Event) error {
	if _, err := tx.Exec(ctx, `UPDATE instances i SET status = j.previous_status, updated_at = now()
		FROM cleanup_jobs j
		WHERE j.id = $1 AND j.previous_status IS NOT NULL AND i.id = j.instance_id::text::`+s.shape.IDTypes["instances"]+` AND i.status = '`+stale.StatusRemoving+`'`,
		job.ID); err != nil {
		return err
	}
	return s.insertEvent(ctx, tx, event)
}

// RetryJob puts back a job whose check could not tell (the engine or the
// store did not answer): pending again, due after the given time, with the
// reason it was put back. A mark removing it made stands, so that the retry
// resumes it.
func (s *Store) RetryJob(ctx context.Context, job Job, code, reason string, after time.Duration) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fenced(ctx, tx, job, `UPDATE cleanup_jobs SET state = '`+string(JobPending)+`', reason_code = $3, reason = $4,
			not_before = now() + $5::interval, lease_until = NULL WHERE id = $1 AND attempts = $2`, code, reason, after)
	})
	if err != nil {
		return fmt.Errorf("retry cleanup job %d: %w", job.ID, err)
	}
	return nil
}

// fenced runs a job update whose first two parameters are the job id and
// attempt, failing with ErrLeaseLost when a later lease took the job over.
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
	key, ok := s.InstanceKey(instanceID)
	if !ok {
		return Job{}, false, nil
	}
	job, err := scanJob(s.pool.QueryRow(ctx, "SELECT "+jobColumns+` FROM cleanup_jobs
		WHERE instance_id = $1 AND result = '`+string(ResultRemoved)+`' ORDER BY id DESC LIMIT 1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("read removal of %s: %w", instanceID, err)
	}
	return job, true, nil
}
