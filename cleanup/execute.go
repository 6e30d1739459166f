package cleanup

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// execute carries out one leased job: a new one is checked, then marks its
// instance removing and pins itself to what it judged; one that had marked
// before it was interrupted goes straight on. Either way the pin is checked
// against live state right before the removal.
func (s *Service) execute(ctx context.Context, job store.Job) {
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	if job.PreviousStatus == "" {
		ch, no, err := s.check(ctx, job)
		switch {
		case err != nil:
			s.retryOrFail(ctx, job, ch.in, err)
			return
		case no != nil:
			s.skip(ctx, job, ch.in, no)
			return
		}
		var ok bool
		if job, ok = s.mark(ctx, job, ch); !ok {
			return
		}
	}
	in, target, no, err := s.pinned(ctx, job)
	switch {
	case err != nil:
		s.retryOrFail(ctx, job, in, err)
	case no != nil:
		s.skip(ctx, job, in, no)
	case !target.Found:
		s.recordRemoved(ctx, job, in, removal{})
	default:
		s.remove(ctx, job, in, target)
	}
}

// mark sets the instance removing and pins the job to what was checked: the
// container's full id as the engine gave it, and the sign of life judged.
func (s *Service) mark(ctx context.Context, job store.Job, ch checked) (store.Job, bool) {
	err := s.store.MarkRemoving(ctx, job, ch.in.Status, ch.c.ID, ch.verdict.LastAlive)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		s.logger.Warn("cleanup job taken over by another worker", "job_id", job.ID)
		return job, false
	case errors.Is(err, store.ErrStatusChanged):
		s.skip(ctx, job, ch.in, refuse(CodeChanged, "instance changed while it was checked"))
		return job, false
	case err != nil:
		// If the mark committed and only its answer was lost, the retry
		// resumes it; if the job cannot be put back either, it is resumed
		// after its lease.
		s.retryOrFail(ctx, job, ch.in, err)
		return job, false
	}
	job.PreviousStatus, job.TargetContainerID, job.JudgedLastAlive = ch.in.Status, ch.c.ID, ch.verdict.LastAlive
	return job, true
}

// removal is what a removal did, for its event.
type removal struct {
	// volumes are the anonymous volumes removed with the container.
	volumes []string
	// lostAnswer is the error of an engine answer that was lost.
	lostAnswer error
}

// remove removes the pinned container by its full id, never by the name or
// prefix the row may hold, and never forced: the engine itself refuses to
// remove a container that started after the last check. Its anonymous
// volumes go with it unless KeepVolumes.
func (s *Service) remove(ctx context.Context, job store.Job, in stale.Instance, target stale.Container) {
	withVolumes := !s.cfg.KeepVolumes
	err := s.docker.Remove(ctx, target.ID, withVolumes)
	r := removal{lostAnswer: err}
	switch {
	case err == nil, errors.Is(err, docker.ErrNotFound):
		r.lostAnswer = nil
	case errors.Is(err, docker.ErrConflict):
		s.skip(ctx, job, in, refuse(CodeRunning, "container started before it could be removed: %v", err))
		return
	default:
		// The engine may have removed it and the answer been lost
		// (connection cut, engine restarting): ask again.
		c, inspectErr := s.docker.Inspect(ctx, target.ID)
		switch {
		case inspectErr != nil:
			// Whether the engine acted is unknown: the job stays
			// removing and is resumed after its lease, which asks again.
			s.logger.Warn("remove container: outcome unknown, resuming after the lease", "job_id", job.ID,
				"container_id", target.ID, "err", err, "inspect_err", inspectErr)
			return
		case c.Found:
			s.retryOrFail(ctx, job, in, err)
			return
		}
		s.logger.Warn("container removed though the engine's answer was lost", "job_id", job.ID,
			"container_id", target.ID, "err", err)
	}
	if withVolumes {
		r.volumes = s.volumesRemoved(ctx, target)
	}
	s.recordRemoved(ctx, job, in, r)
}

// volumesRemoved asks which of a removed container's anonymous volumes are
// gone: the engine removed them with it.
func (s *Service) volumesRemoved(ctx context.Context, c stale.Container) []string {
	var names []string
	for _, v := range c.Volumes {
		if v.Anonymous {
			names = append(names, v.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	gone, err := s.docker.VolumesGone(ctx, names)
	if err != nil {
		s.logger.Warn("ask which volumes went with a removed container", "container_id", c.ID, "err", err)
	}
	return gone
}

// recordRemoved deletes the row of an instance whose container is gone,
// writes the event and closes the job. If the store fails here, the job is
// resumed after its lease and finds the container gone.
func (s *Service) recordRemoved(ctx context.Context, job store.Job, in stale.Instance, r removal) {
	bytes, measured := s.scans.Reclaimable(job.TargetContainerID)
	err := s.store.FinishRemoved(ctx, job, func(rowKept bool) store.Event { return removedEvent(job, in, rowKept, r.volumes) })
	if err != nil {
		s.logger.Error("record cleanup", "job_id", job.ID, "instance_id", job.InstanceID, "err", err)
		return
	}
	s.metrics.cleanups.WithLabelValues(string(job.Trigger), string(store.ResultRemoved)).Inc()
	if measured {
		s.metrics.reclaimed.Add(float64(bytes))
	}
	s.logger.Info("removed stale container", "job_id", job.ID, "instance_id", job.InstanceID, "container_id", job.TargetContainerID,
		"volumes", r.volumes, "trigger", job.Trigger, "requested_by", job.RequestedBy, "answer_lost", r.lostAnswer != nil)
}

// skip closes a job that may not remove, with its reason.
func (s *Service) skip(ctx context.Context, job store.Job, in stale.Instance, no *refusal) {
	if s.finish(ctx, job, in, store.ResultSkipped, no.code, no.reason) {
		s.metrics.refusals.WithLabelValues(string(no.code)).Inc()
	}
}

// retryOrFail puts back a job whose check or removal could not tell, with a
// backoff that doubles each time, until it has been tried MaxAttempts times;
// then, or at once for a misconfiguration, it fails with the last reason.
func (s *Service) retryOrFail(ctx context.Context, job store.Job, in stale.Instance, cause error) {
	code := failureCode(cause)
	if code == CodeMisconfigured || job.Attempts >= s.cfg.MaxAttempts {
		s.finish(ctx, job, in, store.ResultFailed, code, cause.Error())
		return
	}
	backoff := s.cfg.RetryBackoff << min(job.Attempts-1, 10)
	reason := fmt.Sprintf("retrying in %s (attempt %d of %d): %v", backoff, job.Attempts, s.cfg.MaxAttempts, cause)
	if err := s.store.RetryJob(ctx, job, string(code), reason, backoff); err != nil {
		s.logger.Error("put back cleanup job", "job_id", job.ID, "err", err)
		return
	}
	s.logger.Info("cleanup job put back", "job_id", job.ID, "instance_id", job.InstanceID, "reason", reason)
}

// failureCode is the code of an error that stopped a job.
func failureCode(err error) Code {
	if errors.Is(err, errMisconfigured) {
		return CodeMisconfigured
	}
	return CodeUnavailable
}

// finish closes a job that removed nothing, with an event saying why. It
// reports whether the job was closed.
func (s *Service) finish(ctx context.Context, job store.Job, in stale.Instance, result store.JobResult, code Code, reason string) bool {
	err := s.store.FinishJob(ctx, job, result, string(code), reason, notRemovedEvent(job, in, result, reason))
	if err != nil {
		s.logger.Error("finish cleanup job", "job_id", job.ID, "err", err)
		return false
	}
	s.metrics.cleanups.WithLabelValues(string(job.Trigger), string(result)).Inc()
	s.logger.Info("cleanup did not remove", "job_id", job.ID, "instance_id", job.InstanceID, "result", result, "code", code, "reason", reason)
	return true
}
