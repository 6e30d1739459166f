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
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"gopkg.in/yaml.v3"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/auth"
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
	Web           *WebFlags
	StoreDSN      string
	StoreTimeout  time.Duration
	DockerHost    string
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
	CleanupWait    time.Duration
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
	docker    *client.Client
	scanner   *collector.Scanner
	service   *cleanup.Service
	server    *http.Server
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
	a := &App{cfg: cfg, logger: logger}
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
	if cfg.StoreDSN == "" {
		cfg.StoreDSN = LocalDSN
		logger.Info("no --store.dsn: using the local PostgreSQL", "dsn", LocalDSN)
	}
	if a.store, err = store.Open(startCtx, cfg.StoreDSN); err != nil {
		return nil, err
	}
	if err := a.store.Migrate(startCtx); err != nil {
		return nil, err
	}
	shape := a.store.Shape()
	logger.Info("store fits the contract", "instance_ids", shape.IDTypes["instances"], "settings_key_value", shape.SettingsKeyValue,
		"events_to", shape.EventTable)
	if shape.EventMisfit != "" {
		logger.Warn("events go to stale_exporter_events: the platform's event_log does not fit", "reason", shape.EventMisfit)
	}
	if a.docker, err = connectDocker(startCtx, cfg.DockerHost, cfg.DockerTimeout); err != nil {
		return nil, err
	}
	if a.cfg.DockerHostName == "" {
		if a.cfg.DockerHostName, err = engineName(startCtx, a.docker, cfg); err != nil {
			return nil, err
		}
	}
	logger.Info("watching Docker engine", "docker_host", a.cfg.DockerHostName, "claim_unowned", cfg.Unowned)
	if err := a.build(tokens); err != nil {
		return nil, err
	}
	return a, nil
}

// loadTokens reads the tokens file, and refuses basic auth in the web config
// beside it: the toolkit would answer 401 to every bearer token.
func loadTokens(cfg Config, logger *slog.Logger) (*auth.Tokens, error) {
	if cfg.TokensFile == "" {
		logger.Warn("no --api.tokens-file: cleanup endpoints and the webhook are closed")
		return nil, nil
	}
	if cfg.Web != nil && cfg.Web.WebConfigFile != nil && *cfg.Web.WebConfigFile != "" {
		users, err := basicAuthUsers(*cfg.Web.WebConfigFile)
		if err != nil {
			return nil, err
		}
		if users > 0 {
			return nil, errors.New("--web.config.file sets basic_auth_users and --api.tokens-file is set: " +
				"basic auth answers 401 to every bearer token, so the API and the webhook would be unreachable; use one of them")
		}
	}
	if info, err := os.Stat(cfg.TokensFile); err == nil && info.Mode().Perm()&0o077 != 0 {
		// As ssh does for keys: digests are not the tokens, but who may
		// read or change the file decides who may clean up.
		logger.Warn("the tokens file may be read or written by others than its owner: chmod 600 it",
			"file", cfg.TokensFile, "mode", fmt.Sprintf("%#o", info.Mode().Perm()))
	}
	return auth.LoadTokens(cfg.TokensFile)
}

func basicAuthUsers(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read web config: %w", err)
	}
	var c struct {
		Users map[string]string `yaml:"basic_auth_users"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return 0, fmt.Errorf("parse web config %s: %w", path, err)
	}
	return len(c.Users), nil
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

// connectDocker opens a client of the engine and negotiates the API version.
// Errors name the host without credentials.
func connectDocker(ctx context.Context, host string, timeout time.Duration) (*client.Client, error) {
	safe := RedactHost(host)
	docker, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %s", safe, redactIn(err, host))
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := docker.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = docker.Close()
		return nil, fmt.Errorf("connect to Docker at %s: %s", safe, redactIn(err, host))
	}
	return docker, nil
}

// engineName is the engine's own name, from /info.
func engineName(ctx context.Context, docker *client.Client, cfg Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DockerTimeout)
	defer cancel()
	info, err := docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("read the name of the Docker engine at %s (or set --docker.host-name): %s", RedactHost(cfg.DockerHost), redactIn(err, cfg.DockerHost))
	}
	if info.Info.Name == "" {
		return "", errors.New("the Docker engine reports no name: set --docker.host-name")
	}
	return info.Info.Name, nil
}

// RedactHost hides the password of a Docker host address.
func RedactHost(host string) string {
	u, err := url.Parse(host)
	if err != nil {
		return "(unparsable Docker host)"
	}
	return u.Redacted()
}

// redactIn removes a host's credentials from an error message.
func redactIn(err error, host string) string {
	msg := err.Error()
	u, perr := url.Parse(host)
	if perr != nil || u.User == nil {
		return msg
	}
	msg = strings.ReplaceAll(msg, host, u.Redacted())
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

func (a *App) build(tokens *auth.Tokens) error {
	cfg := a.cfg
	a.scanner = collector.NewScanner(a.docker, a.store, collector.Config{
		Threshold:      cfg.Threshold,
		CacheTTL:       cfg.CacheTTL,
		MaxSnapshotAge: cfg.MaxSnapshotAge,
		DockerTimeout:  cfg.DockerTimeout,
		Adopt:          cfg.Adopt,
		DockerHost:     a.cfg.DockerHostName,
		Unowned:        cfg.Unowned,
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
		Workers:       cfg.Workers,
		Threshold:     cfg.Threshold,
		DockerTimeout: cfg.DockerTimeout,
		MaxStaleRatio: cfg.MaxStaleRatio,
		DryRun:        cfg.DryRun,
		StoreTimeout:  cfg.StoreTimeout,
		DockerHost:    a.cfg.DockerHostName,
		Unowned:       cfg.Unowned,
		JobExpiry:     cfg.JobExpiry,
		Retention:     cfg.Retention,
	}, own, a.logger)

	router := httprouter.New()
	api.New(a.service, a.scanner, a.store, api.Config{
		Tokens:        tokens,
		Wait:          cfg.CleanupWait,
		MaxPerRequest: cfg.MaxPerRequest,
		MaxBodyBytes:  maxBodyBytes,
		StoreTimeout:  cfg.StoreTimeout,
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
