package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// build makes the scanner, the cleanup service, the registry and the HTTP
// server over them.
func (a *App) build() error {
	cfg := a.cfg
	a.scanner = scan.NewScanner(a.docker, a.store, scan.Config{
		Config:         a.judging(),
		CacheTTL:       cfg.CacheTTL,
		MaxSnapshotAge: cfg.MaxSnapshotAge,
		Timeout:        4 * cfg.DockerTimeout,
		Adopt:          cfg.Adopt,
	}, a.logger)
	reg := prometheus.NewRegistry()
	// The exporter's own metrics carry the engine it watches.
	own := prometheus.WrapRegistererWith(prometheus.Labels{stale.KeyDockerHost: a.cfg.DockerHostName}, reg)
	reg.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
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
	router.Handler(http.MethodGet, "/metrics", collector.NewHandler(a.scanner, reg, a.cfg.DockerHostName, collector.HandlerOpts{
		MaxRequests: cfg.MaxRequests, Timeout: 2 * cfg.DockerTimeout,
	}, a.logger))
	router.HandlerFunc(http.MethodGet, "/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "Healthy")
	})
	router.HandlerFunc(http.MethodGet, "/-/ready", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.StoreTimeout)
		defer cancel()
		if err := a.store.Ping(ctx); err != nil {
			http.Error(w, "store unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "Ready")
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "stale-exporter",
		Description: "Containers a deploy platform left behind",
		Version:     version.Info(),
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics"},
			{Address: "/api/containers/stale", Text: "Stale containers (JSON)"},
		},
	})
	if err != nil {
		return fmt.Errorf("landing page: %w", err)
	}
	router.NotFound = api.NotFound(landing)
	a.server = &http.Server{
		Handler:           router,
		ReadHeaderTimeout: min(10*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug),
	}
	return nil
}
