package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Request asks for the cleanup of one instance and returns its job: a new
// one, the one already in flight, or, for an instance already removed, the
// job that removed it. A dry run returns a job marked DryRun, judged and
// never stored, and removes nothing.
func (s *Service) Request(ctx context.Context, instanceID string, trigger store.Trigger, requestedBy string, dryRun bool) (store.Job, error) {
	ctx, done := s.storeDeadline(ctx)
	defer done()
	job, err := s.request(ctx, instanceID, trigger, requestedBy, dryRun)
	return job, s.explain(ctx, "request the cleanup of "+instanceID, err)
}

func (s *Service) request(ctx context.Context, instanceID string, trigger store.Trigger, requestedBy string, dryRun bool) (store.Job, error) {
	in, err := s.store.Instance(ctx, instanceID)
	if errors.Is(err, store.ErrNotFound) {
		return s.removal(ctx, instanceID)
	}
	if err != nil {
		return store.Job{}, err
	}
	req := store.JobRequest{InstanceID: in.ID, ContainerID: in.ContainerID, Trigger: trigger, RequestedBy: requestedBy}
	if dryRun || s.cfg.DryRun {
		return s.dryRun(ctx, req), nil
	}
	job, _, err := s.store.EnqueueJob(ctx, req)
	if errors.Is(err, store.ErrNotFound) {
		// Removed between the read and the enqueue.
		return s.removal(ctx, instanceID)
	}
	if err != nil {
		return store.Job{}, err
	}
	s.wakeWorkers()
	return job, nil
}

// removal returns the job that removed an instance that no longer exists.
func (s *Service) removal(ctx context.Context, instanceID string) (store.Job, error) {
	job, ok, err := s.store.LastRemoval(ctx, instanceID)
	if err != nil {
		return store.Job{}, err
	}
	if !ok {
		return store.Job{}, ErrUnknownInstance
	}
	return job, nil
}

// dryRun judges a request as a job would, and stores nothing.
func (s *Service) dryRun(ctx context.Context, req store.JobRequest) store.Job {
	job := store.Job{InstanceID: req.InstanceID, ContainerID: req.ContainerID, Trigger: req.Trigger, DryRun: true,
		RequestedBy: req.RequestedBy, State: store.JobDone, CreatedAt: s.cfg.Now()}
	_, no, err := s.check(ctx, job)
	switch {
	case err != nil:
		job.Result, job.Code, job.Reason = store.ResultFailed, string(failureCode(err)), err.Error()
	case no != nil:
		job.Result, job.Code, job.Reason = store.ResultSkipped, string(no.code), no.reason
		s.metrics.refusals.WithLabelValues(string(no.code)).Inc()
	default:
		job.Result = store.ResultWouldRemove
	}
	job.FinishedAt = s.cfg.Now()
	s.metrics.cleanups.WithLabelValues(string(job.Trigger), string(job.Result)).Inc()
	return job
}

// Bulk requests the cleanup of every stale instance of the latest scan, the
// longest stale first, at most limit of them.
func (s *Service) Bulk(ctx context.Context, limit int, requestedBy string, dryRun bool) (jobs []store.Job, staleCount int, err error) {
	scanCtx, done := s.storeDeadline(ctx)
	r := s.scans.Result(scanCtx)
	done()
	snap := r.Snapshot
	if snap == nil {
		return nil, 0, s.explain(scanCtx, "wait for a successful scan", fmt.Errorf("no recent successful scan: %w", r.Err))
	}
	var targets []stale.Observation
	for _, o := range snap.Observations {
		if o.Verdict.Stale {
			targets = append(targets, o)
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Verdict.LastAlive.Before(targets[j].Verdict.LastAlive) })
	staleCount = len(targets)
	if len(targets) > limit {
		targets = targets[:limit]
	}
	for _, o := range targets {
		job, err := s.Request(ctx, o.Instance.ID, store.TriggerBulk, requestedBy, dryRun)
		if errors.Is(err, ErrUnknownInstance) {
			continue // removed since the scan
		}
		if err != nil {
			return jobs, staleCount, err
		}
		jobs = append(jobs, job)
	}
	return jobs, staleCount, nil
}

// Wait polls the given jobs until all are done or ctx ends, and returns
// their latest state. Dry runs are returned as given. A job that found its
// instance already removed by another job is answered with that job, so
// that asking twice is not an error.
func (s *Service) Wait(ctx context.Context, jobs []store.Job) ([]store.Job, error) {
	var ids []int64
	for _, j := range jobs {
		if !j.DryRun && j.State != store.JobDone {
			ids = append(ids, j.ID)
		}
	}
	latest := map[int64]store.Job{}
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for len(ids) > 0 {
		// The last read happens after ctx ends, to answer the latest states.
		readCtx, done := s.storeDeadline(context.WithoutCancel(ctx))
		got, err := s.store.Jobs(readCtx, ids)
		err = s.explain(readCtx, "read the cleanup jobs", err)
		done()
		if err != nil {
			return nil, err
		}
		ids = ids[:0]
		for _, j := range got {
			latest[j.ID] = j
			if j.State != store.JobDone {
				ids = append(ids, j.ID)
			}
		}
		if len(ids) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			ids = nil
		case <-ticker.C:
		}
	}
	out := make([]store.Job, len(jobs))
	for i, j := range jobs {
		if l, ok := latest[j.ID]; ok && !j.DryRun {
			j = l
		}
		if j.Result == store.ResultSkipped && Code(j.Code) == CodeGone {
			readCtx, done := s.storeDeadline(context.WithoutCancel(ctx))
			if removal, err := s.removal(readCtx, j.InstanceID); err == nil {
				j = removal
			}
			done()
		}
		out[i] = j
	}
	return out, nil
}

// RecentJobs lists the latest jobs, newest first.
func (s *Service) RecentJobs(ctx context.Context, limit int) ([]store.Job, error) {
	ctx, done := s.storeDeadline(ctx)
	defer done()
	jobs, err := s.store.RecentJobs(ctx, limit)
	return jobs, s.explain(ctx, "read the recent cleanup jobs", err)
}

// Jobs reads the jobs of those ids that exist.
func (s *Service) Jobs(ctx context.Context, ids []int64) ([]store.Job, error) {
	ctx, done := s.storeDeadline(ctx)
	defer done()
	jobs, err := s.store.Jobs(ctx, ids)
	return jobs, s.explain(ctx, "read cleanup jobs", err)
}

// storeDeadline bounds a request's store work by the store timeout, and
// remembers when it started so that explain can say how long it waited.
func (s *Service) storeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithValue(ctx, startedKey{}, time.Now())
	return context.WithTimeout(ctx, s.cfg.StoreTimeout)
}

type startedKey struct{}

// TimeoutError says what did not answer in time, and how long the request
// really waited: a process frozen past its deadline waited longer than the
// limit, while PostgreSQL may have been fine all along.
type TimeoutError struct {
	Op     string
	Limit  time.Duration
	Waited time.Duration
	Err    error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: no answer within --store.timeout (%s; waited %s): %v", e.Op, e.Limit, e.Waited.Round(time.Millisecond), e.Err)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// explain names the operation of a failed store request, and when its
// deadline ran out says so.
func (s *Service) explain(ctx context.Context, op string, err error) error {
	if err == nil || errors.Is(err, ErrUnknownInstance) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		waited := s.cfg.StoreTimeout
		if started, ok := ctx.Value(startedKey{}).(time.Time); ok {
			waited = time.Since(started)
		}
		return &TimeoutError{Op: op, Limit: s.cfg.StoreTimeout, Waited: waited, Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Keep keeps an instance from being stale until keep.Until (forever when
// zero), written to the event log; the re-check honours it, so no cleanup
// removes a kept instance.
func (s *Service) Keep(ctx context.Context, instanceID string, keep stale.Keep) error {
	ctx, done := s.storeDeadline(ctx)
	defer done()
	err := s.store.KeepInstance(ctx, instanceID, keep)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknownInstance
	}
	if err == nil {
		s.scans.Expire()
	}
	return s.explain(ctx, "keep instance "+instanceID, err)
}

// Unkeep lifts an instance's keep, written to the event log: it is stale at
// once if it is past its threshold, and an automatic cleanup's grace counts
// from now. It fails with store.ErrNoKeep when no keep holds.
func (s *Service) Unkeep(ctx context.Context, instanceID, by string) error {
	ctx, done := s.storeDeadline(ctx)
	defer done()
	err := s.store.UnkeepInstance(ctx, instanceID, by)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknownInstance
	}
	if err == nil {
		s.scans.Expire()
	}
	return s.explain(ctx, "lift the keep of instance "+instanceID, err)
}
