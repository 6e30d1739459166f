package app

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// build makes the scanner, the cleanup service, their metrics and the full
// router over them, once the backends have answered.
func (a *App) build() (http.Handler, error) {
	cfg := a.cfg
	// The exporter's own metrics carry the engine it watches.
	own := prometheus.WrapRegistererWith(prometheus.Labels{stale.KeyDockerHost: cfg.DockerHostName}, a.reg)
	// Scans read the engine through its view when events keep one; the
	// cleanups always ask the engine itself.
	var engine scan.Docker = a.docker
	if cfg.DockerEvents {
		a.view = docker.NewView(a.docker, docker.ViewConfig{Resync: cfg.DockerResync, Ping: quietPing, Changed: a.changed}, a.logger)
		own.MustRegister(a.view)
		engine = a.view
	}
	// Scans read the store through its feed when announcements keep one.
	var inventory scan.Store = a.store
	if cfg.StoreChanges {
		a.feed = store.NewFeed(a.store, store.FeedConfig{Resync: cfg.StoreResync, Heartbeat: cfg.AliveWriteInterval,
			Ping: quietPing, Timeout: cfg.StoreTimeout, Changed: a.changed}, a.logger)
		own.MustRegister(a.feed)
		inventory = store.Fed{Store: a.store, Feed: a.feed}
	}
	sc := scan.Config{
		Config:             a.judging(),
		CacheTTL:           cfg.CacheTTL,
		MaxSnapshotAge:     cfg.MaxSnapshotAge,
		Timeout:            4 * cfg.DockerTimeout,
		Adopt:              cfg.Adopt,
		AliveWriteInterval: cfg.AliveWriteInterval,
	}
	if a.view != nil && a.feed != nil {
		// Both kept live, a scan is current until they say otherwise (or a
		// verdict changes by time): scrapes between share its rendering,
		// with no call to Docker or PostgreSQL; the background scan still
		// runs every interval.
		sc.Live = func() bool { return a.view.Live() && a.feed.Live() }
		sc.LiveTTL = cfg.ScanInterval
	}
	a.scanner = scan.NewScanner(engine, inventory, sc, a.logger)
	a.service = cleanup.NewService(a.store, a.docker, a.scanner, cleanup.Config{
		Config:        a.judging(),
		Workers:       cfg.Workers,
		Lease:         4*cfg.DockerTimeout + 10*time.Second,
		MaxStaleRatio: cfg.MaxStaleRatio,
		DryRun:        cfg.DryRun,
		Grace:         cfg.Grace,
		KeepVolumes:   cfg.KeepVolumes,
		StoreTimeout:  cfg.StoreTimeout,
		JobExpiry:     cfg.JobExpiry,
		Retention:     cfg.Retention,
	}, own, a.logger)

	router := httprouter.New()
	api.New(a.service, a.scanner, a.store, api.Config{
		Tokens:        a.tokens,
		Wait:          cfg.CleanupWait,
		MaxPerRequest: cfg.MaxPerRequest,
		MaxBodyBytes:  maxBodyBytes,
		StoreTimeout:  cfg.StoreTimeout,
		Grace:         cfg.Grace,
	}, own, a.logger).Register(router)
	ready := func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.StoreTimeout)
		defer cancel()
		if err := a.store.Ping(ctx); err != nil {
			http.Error(w, "store unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "Ready")
	}
	landing, err := a.processRoutes(router, a.scanner, ready)
	if err != nil {
		return nil, err
	}
	router.NotFound = api.NotFound(landing)
	return router, nil
}

// quietPing is how often the view asks the engine, and the feed its
// listening connection, whether they answer while nothing arrives: a
// frozen engine or server keeps its stream open.
const quietPing = 15 * time.Second

// changed is told of every change of the view or of the store's feed: the
// cached scan is outdated, and a new one is asked for at once, so that a
// die or a row the platform changed is in the metrics and in last_alive_at
// within the second, scraped or not.
func (a *App) changed() {
	a.scanner.Outdate()
	select {
	case a.rescan <- struct{}{}:
	default: // one is asked for already
	}
}

// rescanOnChange runs the scans the view's changes ask for, one at a time,
// until ctx ends.
func (a *App) rescanOnChange(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.rescan:
			a.scanner.Result(ctx)
		}
	}
}

// startingRouter serves while the exporter waits for its backends: the
// process's endpoints, /metrics with the backends as last tried (store_up,
// docker_up; no instance), /-/ready 503, and every API path a JSON 503.
func (a *App) startingRouter() (http.Handler, error) {
	router := httprouter.New()
	ready := func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, a.waiting.reason(), http.StatusServiceUnavailable)
	}
	landing, err := a.processRoutes(router, &a.waiting, ready)
	if err != nil {
		return nil, err
	}
	router.NotFound = api.Starting(a.waiting.reason, landing)
	return router, nil
}

// processRoutes adds the endpoints both routers serve (health, readiness,
// metrics) and returns the landing page, for the paths no route serves.
func (a *App) processRoutes(router *httprouter.Router, results collector.Results, ready http.HandlerFunc) (http.Handler, error) {
	cfg := a.cfg
	router.Handler(http.MethodGet, cfg.TelemetryPath, collector.NewHandler(results, a.reg, cfg.DockerHostName, collector.HandlerOpts{
		MaxRequests: cfg.MaxRequests, Timeout: 2 * cfg.DockerTimeout,
	}, a.logger))
	router.HandlerFunc(http.MethodGet, "/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "Healthy")
	})
	router.HandlerFunc(http.MethodGet, "/-/ready", ready)
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "stale-exporter",
		Description: "Containers a deploy platform left behind",
		Version:     version.Info(),
		Links: []web.LandingLinks{
			{Address: cfg.TelemetryPath, Text: "Metrics"},
			{Address: "/api/containers/stale", Text: "Stale containers (JSON)"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("landing page: %w", err)
	}
	return landing, nil
}
