package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// maxStartDelay bounds the wait between two tries of the backends: a ping
// every 10s costs nothing, and a host that comes back is served soon.
const maxStartDelay = 10 * time.Second

// start waits for PostgreSQL and Docker, trying again with a backoff
// (1s, doubling, at most 10s) while they cannot be reached, then builds the
// scans and the cleanups, starts them (on work) and serves the full API. It
// returns nil when started or when ctx ends first, and the error of a
// misconfiguration, which waiting cannot cure.
func (a *App) start(ctx context.Context, work *sync.WaitGroup) error {
	var b backends
	for delay := time.Second; ; delay = min(2*delay, maxStartDelay) {
		wait, err := a.connect(ctx, &b)
		if err != nil {
			return err
		}
		if wait == nil {
			break
		}
		a.logger.Warn("waiting for the store and the engine: serving not ready, scans and cleanups wait",
			"waiting_for", a.waiting.what(), "err", wait, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	a.logger.Info("watching Docker engine", "docker_host", a.cfg.DockerHostName, "claim_unowned", a.cfg.Unowned)
	router, err := a.build()
	if err != nil {
		return err
	}
	work.Add(2)
	if a.view != nil {
		work.Add(1)
		go func() {
			defer work.Done()
			a.view.Run(ctx)
		}()
	}
	if a.feed != nil {
		work.Add(1)
		go func() {
			defer work.Done()
			a.feed.Run(ctx)
		}()
	}
	if a.view != nil || a.feed != nil {
		work.Add(1)
		go func() {
			defer work.Done()
			a.rescanOnChange(ctx)
		}()
	}
	go func() {
		defer work.Done()
		a.scanner.Run(ctx, a.cfg.ScanInterval)
	}()
	go func() {
		defer work.Done()
		a.service.Run(ctx)
	}()
	a.handler.set(router)
	return nil
}

// backends is what start has reached so far.
type backends struct {
	migrated, engine bool
}

// connect tries what is not reached yet: the store (then its migrations
// and the contract), and the engine (then its name, unless given). It
// returns why it must wait, or the error that ends the exporter.
func (a *App) connect(ctx context.Context, b *backends) (wait, fatal error) {
	var storeErr, dockerErr error
	if !b.migrated {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		storeErr = a.store.Ping(pctx)
		cancel()
		if storeErr == nil {
			// Migrations wait for other replicas' under an advisory lock.
			mctx, cancel := context.WithTimeout(ctx, time.Minute)
			storeErr = a.store.Migrate(mctx)
			cancel()
		}
		switch {
		case storeErr == nil:
			b.migrated = true
			a.logStoreShape()
		case !store.Unreachable(storeErr):
			return nil, storeErr
		}
	}
	if !b.engine {
		dockerErr = a.docker.Ping(ctx)
		if dockerErr == nil && a.cfg.DockerHostName == "" {
			var name string
			name, dockerErr = a.docker.Name(ctx)
			if errors.Is(dockerErr, docker.ErrNoName) {
				return nil, dockerErr
			}
			a.cfg.DockerHostName = name
		}
		b.engine = dockerErr == nil
	}
	var what string
	switch {
	case !b.migrated && !b.engine:
		what = "PostgreSQL and Docker"
	case !b.migrated:
		what = "PostgreSQL"
	case !b.engine:
		what = "Docker"
	}
	a.waiting.set(what, scan.Result{StoreUp: b.migrated, DockerUp: b.engine, Err: errors.Join(storeErr, dockerErr)})
	if what == "" {
		return nil, nil
	}
	return errors.Join(storeErr, dockerErr), nil
}

// logStoreShape says which shape of the platform's tables the store found.
func (a *App) logStoreShape() {
	shape := a.store.Shape()
	a.logger.Info("store fits the contract", "instance_ids", shape.IDTypes["instances"], "settings_key_value", shape.SettingsKeyValue,
		"events_to", shape.EventTable)
	if shape.EventMisfit != "" {
		a.logger.Warn("events go to stale_exporter_events: the platform's event_log does not fit", "reason", shape.EventMisfit)
	}
}

// judging is how this exporter judges, the same for its scans and cleanups.
func (a *App) judging() stale.Config {
	return stale.Config{Threshold: a.cfg.Threshold, Host: a.cfg.DockerHostName, Unowned: a.cfg.Unowned}
}

// waiting is what the exporter waits for before it starts, and the backends
// as last tried, which /metrics and /-/ready tell meanwhile.
type waiting struct {
	mu      sync.Mutex
	waiting string
	probe   scan.Result
}

// set records a try; each is numbered as a scan would be, so that /metrics
// renders it anew.
func (w *waiting) set(what string, probe scan.Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	probe.Seq = w.probe.Seq + 1
	w.waiting, w.probe = what, probe
}

func (w *waiting) what() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}

// Result is the backends as last tried, for /metrics while starting: no
// scan has run, so no snapshot and no success.
func (w *waiting) Result(context.Context) scan.Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.probe
}

// reason says why the exporter is not ready yet; the log says the errors
// (they name hosts and users, which an unauthenticated answer should not).
func (w *waiting) reason() string {
	return fmt.Sprintf("starting: waiting for %s", w.what())
}

// swapHandler serves through the handler set last: the starting one, then
// the full one once the backends have answered.
type swapHandler struct {
	h atomic.Pointer[http.Handler]
}

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}
