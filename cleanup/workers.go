package cleanup

import (
	"context"
	"sync"
	"time"
)

// Run starts the workers and the maintenance (expiry, retention), and
// blocks until ctx is done and the workers have finished the jobs they hold.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.maintain(ctx)
	}()
	wg.Wait()
}

func (s *Service) work(ctx context.Context) {
	for {
		job, ok, err := s.store.LeaseJob(ctx, s.cfg.Lease, s.cfg.Host, s.cfg.Unowned)
		if err != nil && ctx.Err() == nil {
			s.logger.Error("lease cleanup job", "err", err)
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
