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
	"sync"
	"time"

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
	Web          *WebFlags
	StoreDSN     string
	StoreTimeout time.Duration
	// DockerAddr is the engine's API address (--docker.host).
	DockerAddr    string
	DockerTimeout time.Duration
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
	case c.MaxRequests < 0:
		return fmt.Errorf("--web.max-requests must not be negative, got %d", c.MaxRequests)
	case c.JobExpiry < 0 || c.Retention < 0:
		return errors.New("--cleanup.job-expiry and --store.retention must not be negative (0 turns them off)")
	case c.Grace < 0 || c.Grace > stale.MaxThreshold:
		return fmt.Errorf("--cleanup.grace (%s) must be 0 or more and at most 100 years", c.Grace)
	case c.Retention > 0 && c.Retention < 24*time.Hour:
		return fmt.Errorf("--store.retention (%s) must be at least 24h, or 0 to keep everything", c.Retention)
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

// App is a started exporter, ready to Run.
type App struct {
	cfg       Config
	logger    *slog.Logger
	listeners []net.Listener
	store     *store.Store
	docker    *docker.Engine
	scanner   *scan.Scanner
	service   *cleanup.Service
	server    *http.Server
	tokens    *auth.Keyring
}

// New validates cfg, binds the listen addresses, opens the store (applying
// migrations) and connects to Docker. Nothing runs yet; on error everything
// opened is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tokens, err := loadTokens(cfg, logger)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, logger: logger, tokens: tokens}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.listen(); err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.openStore(startCtx); err != nil {
		return nil, err
	}
	if a.docker, err = docker.Connect(startCtx, cfg.DockerAddr, cfg.DockerTimeout); err != nil {
		return nil, err
	}
	if a.cfg.DockerHostName == "" {
		if a.cfg.DockerHostName, err = a.docker.Name(startCtx); err != nil {
			return nil, err
		}
	}
	logger.Info("watching Docker engine", "docker_host", a.cfg.DockerHostName, "claim_unowned", cfg.Unowned)
	return a, a.build()
}

// openStore opens the store and applies the migrations; the start log says
// which shape of the platform's tables it found.
func (a *App) openStore(ctx context.Context) error {
	dsn := a.cfg.StoreDSN
	if dsn == "" {
		dsn = LocalDSN
		a.logger.Info("no --store.dsn: using the local PostgreSQL", "dsn", LocalDSN)
	}
	var err error
	if a.store, err = store.Open(ctx, dsn); err != nil {
		return err
	}
	if err := a.store.Migrate(ctx); err != nil {
		return err
	}
	shape := a.store.Shape()
	a.logger.Info("store fits the contract", "instance_ids", shape.IDTypes["instances"], "settings_key_value", shape.SettingsKeyValue,
		"events_to", shape.EventTable)
	if shape.EventMisfit != "" {
		a.logger.Warn("events go to stale_exporter_events: the platform's event_log does not fit", "reason", shape.EventMisfit)
	}
	return nil
}

// judging is how this exporter judges, the same for its scans and cleanups.
func (a *App) judging() stale.Config {
	return stale.Config{Threshold: a.cfg.Threshold, Host: a.cfg.DockerHostName, Unowned: a.cfg.Unowned}
}

func (a *App) listen() error {
	if a.cfg.Web == nil || a.cfg.Web.WebListenAddresses == nil || len(*a.cfg.Web.WebListenAddresses) == 0 {
		return errors.New("no --web.listen-address")
	}
	for _, addr := range *a.cfg.Web.WebListenAddresses {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		a.listeners = append(a.listeners, ln)
	}
	return nil
}

// Addrs are the addresses the App listens on.
func (a *App) Addrs() []net.Addr {
	out := make([]net.Addr, len(a.listeners))
	for i, ln := range a.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Run serves until ctx ends or serving fails, then stops in order: the
// listeners (in-flight requests get up to 10s), then the cleanup workers
// (each finishes the job it holds) and the scans, then Docker and the store.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	work.Add(2)
	go func() {
		defer work.Done()
		a.scanner.Run(workCtx, a.cfg.ScanInterval)
	}()
	go func() {
		defer work.Done()
		a.service.Run(workCtx)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ServeMultiple(a.listeners, a.server, a.cfg.Web, a.logger) }()
	var err error
	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
		a.logger.Info("shutting down")
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := a.server.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("shut down HTTP: %w", serr)
	}
	stopWork()
	work.Wait()
	a.scanner.Wait()
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
