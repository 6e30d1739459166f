// Package app is the stale-exporter process: it builds the parts from a
// Config, binds the listeners before anything else starts, serves, and stops
// in order (listeners, then cleanup workers and scans, then the store), so
// that cmd only parses flags and tests can run the whole exporter in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

const exporterName = "stale_exporter"

// LocalDatabase is the database of a local install (scripts/run.sh creates
// it), and LocalDSN its connection string over the local socket: the store
// when --store.dsn is not given.
const (
	LocalDatabase = "stale_exporter"
	LocalDSN      = "host=/var/run/postgresql dbname=" + LocalDatabase
)

// maxBodyBytes caps API and webhook request bodies.
const maxBodyBytes = 1 << 20

// WebFlags are the exporter-toolkit's listen and web-config flags.
type WebFlags = web.FlagConfig

// Config is everything the process is started with.
type Config struct {
	Web *WebFlags
	// TelemetryPath is where the metrics are served (--web.telemetry-path).
	TelemetryPath string
	StoreDSN      string
	StoreTimeout  time.Duration
	// DockerAddr is the engine's API address (--docker.host).
	DockerAddr    string
	DockerTimeout time.Duration
	// DockerEvents keeps a view of the engine by its event stream, re-listed
	// every DockerResync, instead of listing it on every scan.
	DockerEvents bool
	DockerResync time.Duration
	// AliveWriteInterval is how often last_alive_at of a running instance
	// is written (and the engine's heartbeat, with a feed).
	AliveWriteInterval time.Duration
	// StoreChanges keeps the inventory by the store's announcements, read
	// in full every StoreResync, instead of reading it on every scan.
	StoreChanges bool
	StoreResync  time.Duration
	// DockerHostName names the engine (default: its name from /info).
	DockerHostName string
	// Unowned says whether it judges and cleans the instances no engine
	// owns yet (auto: while no other engine has registered).
	Unowned        stale.UnownedMode
	Adopt          bool
	Threshold      time.Duration
	CacheTTL       time.Duration
	ScanInterval   time.Duration
	MaxSnapshotAge time.Duration
	TokensFile     string
	Workers        int
	MaxPerRequest  int
	MaxStaleRatio  float64
	DryRun         bool
	// Grace is how long an instance must have been stale before an
	// automatic cleanup may remove it; KeepVolumes keeps the anonymous
	// volumes of removed containers.
	Grace       time.Duration
	KeepVolumes bool
	CleanupWait time.Duration
	// JobExpiry closes the jobs nobody carried out within it; Retention
	// deletes this service's finished records older than it (0: never).
	JobExpiry    time.Duration
	Retention    time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	MaxRequests  int
}

// Validate refuses settings that cannot work together.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("--cleanup.workers must be at least 1, got %d", c.Workers)
	case c.MaxPerRequest < 1:
		return fmt.Errorf("--cleanup.max-per-request must be at least 1, got %d", c.MaxPerRequest)
	case c.MaxStaleRatio <= 0 || c.MaxStaleRatio > 1:
		return fmt.Errorf("--cleanup.max-stale-ratio must be in (0, 1], got %g", c.MaxStaleRatio)
	case c.DockerTimeout <= 0 || c.ScanInterval <= 0 || c.StoreTimeout <= 0 || c.CleanupWait <= 0:
		return errors.New("--docker.timeout, --store.timeout, --cleanup.wait and --collector.scan-interval must be positive")
	case c.ReadTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("--web.read-timeout and --web.idle-timeout must be positive")
	case c.WriteTimeout <= c.CleanupWait+2*c.StoreTimeout:
		return fmt.Errorf("--web.write-timeout (%s) must outlast --cleanup.wait plus twice --store.timeout (%s)",
			c.WriteTimeout, c.CleanupWait+2*c.StoreTimeout)
	case c.WriteTimeout <= 2*c.DockerTimeout:
		return fmt.Errorf("--web.write-timeout (%s) must outlast a scrape's wait for a scan (twice --docker.timeout, %s)",
			c.WriteTimeout, 2*c.DockerTimeout)
	case !strings.HasPrefix(c.TelemetryPath, "/") || c.TelemetryPath == "/" || isReserved(c.TelemetryPath):
		return fmt.Errorf("--web.telemetry-path %q must be a path of its own (not /, /api/... or /-/...)", c.TelemetryPath)
	case c.MaxRequests < 0:
		return fmt.Errorf("--web.max-requests must not be negative, got %d", c.MaxRequests)
	case c.JobExpiry < 0 || c.Retention < 0:
		return errors.New("--cleanup.job-expiry and --store.retention must not be negative (0 turns them off)")
	case c.Grace < 0 || c.Grace > stale.MaxThreshold:
		return fmt.Errorf("--cleanup.grace (%s) must be 0 or more and at most 100 years", c.Grace)
	case c.Retention > 0 && c.Retention < 24*time.Hour:
		return fmt.Errorf("--store.retention (%s) must be at least 24h, or 0 to keep everything", c.Retention)
	case c.DockerEvents && (c.DockerResync < 10*time.Second || c.DockerResync > 24*time.Hour):
		return fmt.Errorf("--docker.resync-interval (%s) must be from 10s to 24h", c.DockerResync)
	case c.StoreChanges && (c.StoreResync < 10*time.Second || c.StoreResync > 24*time.Hour):
		return fmt.Errorf("--store.resync-interval (%s) must be from 10s to 24h", c.StoreResync)
	case c.AliveWriteInterval < 0 || c.AliveWriteInterval > time.Hour:
		return fmt.Errorf("--store.alive-write-interval (%s) must be from 0 (every scan) to 1h", c.AliveWriteInterval)
	}
	if _, err := stale.ParseUnownedMode(string(c.Unowned)); err != nil {
		return fmt.Errorf("--docker.claim-unowned: %w", err)
	}
	if c.Threshold != 0 {
		if _, err := stale.Threshold(c.Threshold, 0); err != nil {
			return fmt.Errorf("--stale.threshold: %w", err)
		}
	}
	return nil
}

// isReserved reports whether a path is the API's or the process's.
func isReserved(path string) bool {
	return path == "/api" || strings.HasPrefix(path, "/api/") || path == "/-" || strings.HasPrefix(path, "/-/")
}

// App is an exporter bound to its listeners, ready to Run.
type App struct {
	cfg       Config
	logger    *slog.Logger
	listeners []net.Listener
	tokens    *auth.Keyring
	store     *store.Store
	docker    *docker.Engine
	// reg holds the process's metrics from the start, and the scans' and
	// cleanups' once the backends have answered.
	reg     *prometheus.Registry
	handler swapHandler
	server  *http.Server
	// waiting is what the exporter waits for until the backends answer.
	waiting waiting
	// Made once PostgreSQL and Docker have answered (start).
	scanner *scan.Scanner
	service *cleanup.Service
	// view keeps the engine's containers by its events (nil without
	// --docker.events), feed the inventory by the store's announcements
	// (nil without --store.changes); rescan carries their changes to the
	// scans.
	view   *docker.View
	feed   *store.Feed
	rescan chan struct{}
}

// New validates cfg, reads the tokens, binds the listeners and makes the
// store's pool and the Docker client without reaching either: a
// configuration error is an error here, an unreachable backend is not.
// Nothing runs yet; on error everything opened is closed again.
func New(cfg Config, logger *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tokens, err := loadTokens(cfg, logger)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, logger: logger, tokens: tokens, reg: prometheus.NewRegistry(), rescan: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.listen(); err != nil {
		return nil, err
	}
	dsn := cfg.StoreDSN
	if dsn == "" {
		dsn = LocalDSN
		logger.Info("no --store.dsn: using the local PostgreSQL", "dsn", LocalDSN)
	}
	if a.store, err = store.New(dsn); err != nil {
		return nil, err
	}
	if a.docker, err = docker.New(cfg.DockerAddr, cfg.DockerTimeout); err != nil {
		return nil, err
	}
	a.reg.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	a.waiting.set("PostgreSQL and Docker", scan.Result{})
	starting, err := a.startingRouter()
	if err != nil {
		return nil, err
	}
	a.handler.set(starting)
	a.server = &http.Server{
		Handler:           &a.handler,
		ReadHeaderTimeout: min(10*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// Run serves until ctx ends or serving fails. It waits for PostgreSQL and
// Docker (serving /metrics with store_up and docker_up 0 meanwhile, not
// ready, the API answering 503), then applies the migrations, checks the
// contract and starts the scans and the cleanup workers. It stops in order:
// the listeners (in-flight requests get up to 10s), then the cleanup
// workers (each finishes the job it holds) and the scans, then Docker and
// the store. A configuration error found on the way (a password refused,
// a schema that does not fit) ends it with that error.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	started := make(chan error, 1)
	work.Add(1)
	go func() {
		defer work.Done()
		started <- a.start(workCtx, &work)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ServeMultiple(a.listeners, a.server, a.cfg.Web, a.logger) }()
	var err error
	for done := false; !done; {
		select {
		case err = <-serveErr:
			err, done = fmt.Errorf("serve HTTP: %w", err), true
		case err = <-started:
			done = err != nil
		case <-ctx.Done():
			a.logger.Info("shutting down")
			done = true
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := a.server.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("shut down HTTP: %w", serr)
	}
	stopWork()
	work.Wait()
	if a.scanner != nil {
		a.scanner.Wait()
	}
	return err
}

func (a *App) close() {
	for _, ln := range a.listeners {
		_ = ln.Close()
	}
	if a.docker != nil {
		_ = a.docker.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
}

// Addrs are the addresses the App listens on.
func (a *App) Addrs() []net.Addr {
	out := make([]net.Addr, len(a.listeners))
	for i, ln := range a.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Healthcheck returns nil if the exporter at url (its readiness endpoint)
// answers 200, for container health checks.
func Healthcheck(url string) error {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, res.Status)
	}
	return nil
}
