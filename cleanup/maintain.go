package cleanup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// maintainBatch bounds the jobs one maintenance pass expires.
const maintainBatch = 100

// maintain expires the jobs nobody carried out and prunes this service's
// old records, every MaintainInterval, until ctx ends.
func (s *Service) maintain(ctx context.Context) {
	if s.cfg.JobExpiry <= 0 && s.cfg.Retention <= 0 {
		return
	}
	ticker := time.NewTicker(s.cfg.MaintainInterval)
	defer ticker.Stop()
	for {
		s.Maintain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Maintain runs one maintenance pass: expiry of the jobs older than
// JobExpiry that no worker holds (a final result saying why), then retention.
func (s *Service) Maintain(ctx context.Context) {
	if s.cfg.JobExpiry > 0 {
		jobs, err := s.store.ExpirableJobs(ctx, s.cfg.Now().Add(-s.cfg.JobExpiry), maintainBatch)
		if err != nil {
			s.logger.Warn("expire cleanup jobs", "err", err)
		}
		for _, job := range jobs {
			host := job.DockerHost
			if host == "" {
				host = "(none yet)"
			}
			reason := fmt.Sprintf("expired: no exporter of Docker host %s carried it out within %s", host, s.cfg.JobExpiry)
			in := stale.Instance{ID: job.InstanceID}
			err := s.store.ExpireJob(ctx, job, store.ResultSkipped, string(CodeExpired), reason, notRemovedEvent(job, in, store.ResultSkipped, reason))
			if err == nil {
				s.metrics.cleanups.WithLabelValues(string(job.Trigger), string(store.ResultSkipped)).Inc()
				s.metrics.refusals.WithLabelValues(string(CodeExpired)).Inc()
			} else if !errors.Is(err, store.ErrLeaseLost) {
				s.logger.Warn("expire cleanup job", "job_id", job.ID, "err", err)
			}
		}
	}
	if s.cfg.Retention > 0 {
		pruned, err := s.store.Prune(ctx, s.cfg.Now().Add(-s.cfg.Retention))
		if err != nil {
			s.logger.Warn("prune old records", "err", err)
		}
		s.metrics.pruned.WithLabelValues("cleanup_jobs").Add(float64(pruned.Jobs))
		s.metrics.pruned.WithLabelValues("alert_occurrences").Add(float64(pruned.Occurrences))
		s.metrics.pruned.WithLabelValues("stale_exporter_events").Add(float64(pruned.Events))
		s.metrics.pruned.WithLabelValues("stale_exporter_keeps").Add(float64(pruned.Keeps))
	}
}
