// Package cleanup carries out cleanup jobs. Whoever asks (one instance, a
// bulk request, an Alertmanager alert), the request becomes a durable job in
// the store, and one path carries it out: re-check live state against Docker
// and the store, mark the instance removing, remove the container, delete the
// row, write the event. Any failed check is a skip with a reason, never a
// removal. It returns domain outcomes; the HTTP surface is internal/api.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/engine"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Triggers: who asked for a cleanup.
const (
	TriggerSingle  = "single"
	TriggerBulk    = "bulk"
	TriggerWebhook = "webhook"
)

// Triggers are every trigger.
var Triggers = []string{TriggerSingle, TriggerBulk, TriggerWebhook}

// ResultWouldRemove is a dry run's verdict for an instance it would remove.
const ResultWouldRemove = "would_remove"

// reasonGone is the skip reason of a job whose instance was deleted.
const reasonGone = "instance no longer exists"

// ErrUnknownInstance is returned for an instance that does not exist and was
// never removed by this service.
var ErrUnknownInstance = errors.New("unknown instance")

// Docker is the part of the Docker Engine API a cleanup uses.
type Docker interface {
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
}

// Store is the part of the store a cleanup uses.
type Store interface {
	Instance(ctx context.Context, id string) (stale.Instance, error)
	ThresholdDays(ctx context.Context) (int64, error)
	EnqueueJob(ctx context.Context, req store.JobRequest) (store.Job, bool, error)
	ClaimJob(ctx context.Context, lease time.Duration, dockerHost string, unowned bool) (store.Job, bool, error)
	MarkRemoving(ctx context.Context, job store.Job, checkedStatus string) error
	FinishRemoved(ctx context.Context, job store.Job, event store.Event) error
	FinishJob(ctx context.Context, job store.Job, result, reason string, event store.Event) error
	Jobs(ctx context.Context, ids []int64) ([]store.Job, error)
	RecentJobs(ctx context.Context, limit int) ([]store.Job, error)
	LastRemoval(ctx context.Context, instanceID string) (store.Job, bool, error)
	RecordAlert(ctx context.Context, occ store.AlertOccurrence, event store.Event, cleanup *store.JobRequest) (bool, store.Job, error)
}

// Scans gives the latest scan, for the bulk list and the mass-stale guard:
// the last good snapshot (nil when none is recent enough), whether the latest
// scan succeeded, and its error if not.
type Scans interface {
	Latest(ctx context.Context) (snap *stale.Snapshot, succeeded bool, err error)
}

// Config tunes a Service.
type Config struct {
	Workers int
	// Threshold overrides settings.stale_threshold_days when positive.
	Threshold     time.Duration
	DockerTimeout time.Duration
	// Lease is how long a claimed job is a worker's before another may
	// resume it; it must outlast a job's Docker calls.
	Lease time.Duration
	// MaxStaleRatio: above this share of stale instances, bulk and webhook
	// cleanups refuse.
	MaxStaleRatio float64
	// DryRun makes every request a dry run.
	DryRun bool
	// PollInterval is how often idle workers look for jobs other replicas added.
	PollInterval time.Duration
	// Now is the clock of the stale rule; nil means time.Now.
	Now func() time.Time
	// StoreTimeout bounds the store work of one request (default 5s), so
	// that a hanging PostgreSQL answers 503 instead of holding clients.
	StoreTimeout time.Duration
	// DockerHost is the engine this service removes containers from: it
	// carries out only the jobs of instances that engine owns.
	DockerHost string
	// ClaimUnowned also carries out the jobs of instances no engine owns.
	ClaimUnowned bool
}

// Service runs cleanup jobs.
type Service struct {
	store   Store
	docker  Docker
	scans   Scans
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	wake    chan struct{}
}

// NewService returns a Service and registers its metrics with reg.
func NewService(st Store, docker Docker, scans Scans, cfg Config, reg prometheus.Registerer, logger *slog.Logger) *Service {
	if cfg.Lease <= 0 {
		cfg.Lease = 4*cfg.DockerTimeout + 10*time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	return &Service{
		store: st, docker: docker, scans: scans, cfg: cfg, logger: logger,
		metrics: newMetrics(reg),
		wake:    make(chan struct{}, max(cfg.Workers, 1)),
	}
}

// Run starts the workers and blocks until ctx is done and they have finished
// the jobs they hold.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	wg.Wait()
}

func (s *Service) work(ctx context.Context) {
	for {
		job, ok, err := s.store.ClaimJob(ctx, s.cfg.Lease, s.cfg.DockerHost, s.cfg.ClaimUnowned)
		if err != nil && ctx.Err() == nil {
			s.logger.Error("claim cleanup job", "err", err)
		}
		if ok {
			// A job once started is carried to its end, even on shutdown.
			jobCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Lease)
			s.execute(jobCtx, job)
			cancel()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(s.cfg.PollInterval):
		}
	}
}

func (s *Service) wakeWorkers() {
	for range cap(s.wake) {
		select {
		case s.wake <- struct{}{}:
		default:
			return
		}
	}
}

// Request asks for the cleanup of one instance and returns its job: a new
// one, the one already in flight, or, for an instance already removed, the
// job that removed it. A dry run returns a job with no id and removes nothing.
func (s *Service) Request(ctx context.Context, instanceID, trigger, requestedBy string, dryRun bool) (store.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
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

func (s *Service) dryRun(ctx context.Context, req store.JobRequest) store.Job {
	job := store.Job{InstanceID: req.InstanceID, ContainerID: req.ContainerID, Trigger: req.Trigger,
		RequestedBy: req.RequestedBy, State: store.JobDone, CreatedAt: time.Now()}
	_, skip, err := s.check(ctx, job)
	switch {
	case err != nil:
		job.Result, job.Reason = store.ResultFailed, err.Error()
	case skip != "":
		job.Result, job.Reason = store.ResultSkipped, skip
	default:
		job.Result = ResultWouldRemove
	}
	job.FinishedAt = time.Now()
	s.metrics.cleanups.WithLabelValues(job.Trigger, job.Result).Inc()
	return job
}

// Bulk requests the cleanup of every stale instance of the latest scan, the
// longest stale first, at most limit of them.
func (s *Service) Bulk(ctx context.Context, limit int, requestedBy string, dryRun bool) (jobs []store.Job, staleCount int, err error) {
	scanCtx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	snap, _, scanErr := s.scans.Latest(scanCtx)
	cancel()
	if snap == nil {
		return nil, 0, fmt.Errorf("no recent successful scan: %w", scanErr)
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
		job, err := s.Request(ctx, o.Instance.ID, TriggerBulk, requestedBy, dryRun)
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
// their latest state. Jobs without an id (dry runs) are returned as given.
// A job that found its instance already removed by another job is answered
// with that job, so that asking twice is not an error.
func (s *Service) Wait(ctx context.Context, jobs []store.Job) ([]store.Job, error) {
	var ids []int64
	for _, j := range jobs {
		if j.ID != 0 && j.State != store.JobDone {
			ids = append(ids, j.ID)
		}
	}
	latest := map[int64]store.Job{}
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for len(ids) > 0 {
		// The last read happens after ctx ends, to answer the latest states.
		readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
		got, err := s.store.Jobs(readCtx, ids)
		cancel()
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
		if l, ok := latest[j.ID]; ok {
			j = l
		}
		if j.Result == store.ResultSkipped && j.Reason == reasonGone {
			readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
			if removal, err := s.removal(readCtx, j.InstanceID); err == nil {
				j = removal
			}
			cancel()
		}
		out[i] = j
	}
	return out, nil
}

// RecentJobs lists the latest jobs, newest first.
func (s *Service) RecentJobs(ctx context.Context, limit int) ([]store.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	return s.store.RecentJobs(ctx, limit)
}

// check re-checks a job against live Docker and the store right before
// acting. It returns a skip reason, or an error if it could not tell.
func (s *Service) check(ctx context.Context, job store.Job) (stale.Instance, string, error) {
	in, err := s.store.Instance(ctx, job.InstanceID)
	if errors.Is(err, store.ErrNotFound) {
		return in, reasonGone, nil
	}
	if err != nil {
		return in, "", err
	}
	if reason := s.ownership(in, job); reason != "" {
		return in, reason, nil
	}
	if in.ContainerID != job.ContainerID {
		return in, replacedReason(in, job), nil
	}
	c, err := engine.Inspect(ctx, s.docker, job.ContainerID, s.cfg.DockerTimeout)
	if err != nil {
		return in, "", err
	}
	if c.Found && c.Labels[stale.LabelInstanceID] != in.ID {
		return in, fmt.Sprintf("container does not carry %s=%s", stale.LabelInstanceID, in.ID), nil
	}
	threshold, err := s.threshold(ctx)
	if err != nil {
		return in, "", err
	}
	now := s.cfg.Now()
	switch v := stale.Judge(in, c, threshold, now); v.Reason {
	case stale.ReasonStale:
	case stale.ReasonRemoving:
		return in, "instance is already being removed", nil
	case stale.ReasonRecent:
		return in, fmt.Sprintf("not stale: last alive %s ago, threshold %s",
			now.Sub(v.LastAlive).Round(time.Second), threshold), nil
	default:
		return in, string(v.Reason), nil
	}
	if job.Trigger != TriggerSingle {
		if reason := s.massStaleGuard(ctx); reason != "" {
			return in, reason, nil
		}
	}
	return in, "", nil
}

// threshold is the stale threshold in force, validated.
func (s *Service) threshold(ctx context.Context) (time.Duration, error) {
	var days int64
	if s.cfg.Threshold == 0 {
		var err error
		if days, err = s.store.ThresholdDays(ctx); err != nil {
			return 0, err
		}
	}
	return stale.Threshold(s.cfg.Threshold, days)
}

// ownership refuses an instance this engine does not own (only its owner's
// exporter may look at its container), or one that moved since the request.
func (s *Service) ownership(in stale.Instance, job store.Job) string {
	switch {
	case in.DockerHost != s.cfg.DockerHost && !(in.DockerHost == "" && s.cfg.ClaimUnowned):
		if in.DockerHost == "" {
			return "no Docker host owns this instance yet; its exporter will once it lists the container"
		}
		return fmt.Sprintf("instance is owned by Docker host %q: only its exporter judges and removes it", in.DockerHost)
	case job.ID != 0 && job.DockerHost != "" && in.DockerHost != job.DockerHost:
		return fmt.Sprintf("instance moved to Docker host %q since the request (for %q)", in.DockerHost, job.DockerHost)
	}
	return ""
}

func replacedReason(in stale.Instance, job store.Job) string {
	return fmt.Sprintf("instance now has container %q, not %q: replaced since the request", in.ContainerID, job.ContainerID)
}

// checkResumed re-checks a job that had already marked its instance removing
// before it was interrupted. Its judgement was made: it is not made again
// (the guard or a changed threshold must not leave a half-done removal), but
// the live state must still be the one it judged: same container, still
// removing by this job, container not running and still the instance's.
// gone reports a container already removed (the engine acted before the
// interruption).
func (s *Service) checkResumed(ctx context.Context, job store.Job) (in stale.Instance, skip string, gone bool, err error) {
	in, err = s.store.Instance(ctx, job.InstanceID)
	if errors.Is(err, store.ErrNotFound) {
		return in, reasonGone, false, nil
	}
	if err != nil {
		return in, "", false, err
	}
	if reason := s.ownership(in, job); reason != "" {
		return in, reason, false, nil
	}
	switch {
	case in.ContainerID != job.ContainerID:
		return in, replacedReason(in, job), false, nil
	case in.Status != stale.StatusRemoving:
		return in, fmt.Sprintf("instance status changed to %q while its removal was interrupted", in.Status), false, nil
	}
	c, err := engine.Inspect(ctx, s.docker, job.ContainerID, s.cfg.DockerTimeout)
	switch {
	case err != nil:
		return in, "", false, err
	case !c.Found:
		return in, "", true, nil
	case c.Labels[stale.LabelInstanceID] != in.ID:
		return in, fmt.Sprintf("container does not carry %s=%s", stale.LabelInstanceID, in.ID), false, nil
	case c.Running():
		return in, string(stale.ReasonRunning), false, nil
	}
	return in, "", false, nil
}

// massStaleGuard refuses automatic cleanup when too many instances are stale
// at once: that smells of a broken Docker or clock, not of real staleness.
func (s *Service) massStaleGuard(ctx context.Context) string {
	snap, succeeded, _ := s.scans.Latest(ctx)
	if !succeeded || snap == nil {
		return "mass-stale guard: the latest scan failed, refusing automatic cleanup"
	}
	total, staleCount := len(snap.Observations), snap.StaleCount()
	if total > 0 && float64(staleCount)/float64(total) > s.cfg.MaxStaleRatio {
		return fmt.Sprintf("mass-stale guard: %d of %d instances are stale (more than %.0f%%), refusing automatic cleanup",
			staleCount, total, 100*s.cfg.MaxStaleRatio)
	}
	return ""
}

// execute carries out one claimed job. A job that had marked its instance
// removing before it was interrupted resumes its removal.
func (s *Service) execute(ctx context.Context, job store.Job) {
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	if job.PreviousStatus != "" {
		in, skip, gone, err := s.checkResumed(ctx, job)
		switch {
		case err != nil:
			s.finish(ctx, job, in, store.ResultFailed, err.Error())
		case skip != "":
			s.finish(ctx, job, in, store.ResultSkipped, skip)
		case gone:
			s.recordRemoved(ctx, job, in)
		default:
			s.remove(ctx, job, in)
		}
		return
	}
	in, skip, err := s.check(ctx, job)
	switch {
	case err != nil:
		s.finish(ctx, job, in, store.ResultFailed, err.Error())
	case skip != "":
		s.finish(ctx, job, in, store.ResultSkipped, skip)
	default:
		s.markAndRemove(ctx, job, in)
	}
}

func (s *Service) markAndRemove(ctx context.Context, job store.Job, in stale.Instance) {
	err := s.store.MarkRemoving(ctx, job, in.Status)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		s.logger.Warn("cleanup job taken over by another worker", "job_id", job.ID)
		return
	case errors.Is(err, store.ErrStatusChanged):
		s.finish(ctx, job, in, store.ResultSkipped, "instance changed while it was checked")
		return
	case err != nil:
		// If the mark committed and only its answer was lost, closing the
		// job puts the status back; if the job cannot be closed either, it
		// is resumed after its lease.
		s.finish(ctx, job, in, store.ResultFailed, err.Error())
		return
	}
	job.PreviousStatus = in.Status
	s.remove(ctx, job, in)
}

// remove removes the container of a job that marked its instance removing.
func (s *Service) remove(ctx context.Context, job store.Job, in stale.Instance) {
	if job.ContainerID != "" {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.DockerTimeout)
		// Never forced: the engine itself refuses to remove a container that
		// started after the check.
		_, err := s.docker.ContainerRemove(rctx, job.ContainerID, client.ContainerRemoveOptions{})
		cancel()
		switch {
		case err == nil, cerrdefs.IsNotFound(err):
		case cerrdefs.IsConflict(err):
			s.finish(ctx, job, in, store.ResultSkipped, "container started before it could be removed: "+err.Error())
			return
		default:
			// The engine may have removed it and the answer been lost
			// (connection cut, engine restarting): ask again.
			c, inspectErr := engine.Inspect(ctx, s.docker, job.ContainerID, s.cfg.DockerTimeout)
			switch {
			case inspectErr != nil:
				// Whether the engine acted is unknown: the job stays
				// removing and is resumed after its lease, which asks again.
				s.logger.Warn("remove container: outcome unknown, resuming after the lease", "job_id", job.ID,
					"container_id", job.ContainerID, "err", err, "inspect_err", inspectErr)
				return
			case c.Found:
				s.finish(ctx, job, in, store.ResultFailed, fmt.Sprintf("remove container %s: %v", job.ContainerID, err))
				return
			}
			s.logger.Warn("container removed though the engine's answer was lost", "job_id", job.ID,
				"container_id", job.ContainerID, "err", err)
		}
	}
	s.recordRemoved(ctx, job, in)
}

// recordRemoved deletes the row of an instance whose container is gone,
// writes the event and closes the job. If the store fails here, the job is
// resumed after its lease and finds the container gone.
func (s *Service) recordRemoved(ctx context.Context, job store.Job, in stale.Instance) {
	err := s.store.FinishRemoved(ctx, job, store.Event{
		Severity:   store.SeverityInfo,
		Message:    fmt.Sprintf("removed stale container %s of %s", stale.ShortID(job.ContainerID), describe(in)),
		ProjectID:  in.ProjectID,
		InstanceID: job.InstanceID,
		Details:    eventDetails(job, in, ""),
	})
	if err != nil {
		s.logger.Error("record cleanup", "job_id", job.ID, "instance_id", job.InstanceID, "err", err)
		return
	}
	s.metrics.cleanups.WithLabelValues(job.Trigger, store.ResultRemoved).Inc()
	s.logger.Info("removed stale container", "job_id", job.ID, "instance_id", job.InstanceID,
		"container_id", job.ContainerID, "trigger", job.Trigger, "requested_by", job.RequestedBy)
}

// finish closes a job that removed nothing, with an event saying why.
func (s *Service) finish(ctx context.Context, job store.Job, in stale.Instance, result, reason string) {
	severity := store.SeverityInfo
	if result == store.ResultFailed {
		severity = store.SeverityWarning
	}
	err := s.store.FinishJob(ctx, job, result, reason, store.Event{
		Severity:   severity,
		Message:    fmt.Sprintf("cleanup of container %s of %s %s: %s", stale.ShortID(job.ContainerID), describe(in), result, reason),
		ProjectID:  in.ProjectID,
		InstanceID: job.InstanceID,
		Details:    eventDetails(job, in, reason),
	})
	if err != nil {
		s.logger.Error("finish cleanup job", "job_id", job.ID, "err", err)
		return
	}
	s.metrics.cleanups.WithLabelValues(job.Trigger, result).Inc()
	s.logger.Info("cleanup did not remove", "job_id", job.ID, "instance_id", job.InstanceID, "result", result, "reason", reason)
}

func describe(in stale.Instance) string {
	if in.ProjectName == "" {
		return "instance " + in.ID
	}
	return fmt.Sprintf("%s/%s (%s)", in.ProjectName, in.StageName, in.ImageTag)
}

func eventDetails(job store.Job, in stale.Instance, reason string) map[string]any {
	d := map[string]any{
		"job_id": job.ID, "trigger": job.Trigger, "requested_by": job.RequestedBy,
		"container_id": job.ContainerID, "project_name": in.ProjectName, "stage_name": in.StageName,
		"image_tag": in.ImageTag,
	}
	if reason != "" {
		d["reason"] = reason
	}
	return d
}
