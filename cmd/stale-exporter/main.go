// Command stale-exporter finds the containers a deploy platform left behind,
// exports them to Prometheus and cleans them up on request.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/julienschmidt/httprouter"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/secrets"
	"github.com/docker-watcher/stale-exporter/store"
)

const exporterName = "stale_exporter"

type serveFlags struct {
	web            *web.FlagConfig
	storeDSN       string
	dockerHost     string
	dockerTimeout  time.Duration
	adopt          bool
	threshold      time.Duration
	cacheTTL       time.Duration
	scanInterval   time.Duration
	maxSnapshotAge time.Duration
	tokensFile     string
	workers        int
	maxPerRequest  int
	maxStaleRatio  float64
	dryRun         bool
	cleanupWait    time.Duration
}

// maxBodyBytes caps API and webhook request bodies.
const maxBodyBytes = 1 << 20

func main() {
	app := kingpin.New("stale-exporter", "Exports containers a deploy platform left behind, and cleans them up.")
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)
	app.Version(version.Print("stale-exporter"))
	app.HelpFlag.Short('h')

	serve := app.Command("serve", "Run the exporter (the default).").Default()
	var f serveFlags
	f.web = kingpinflag.AddFlags(serve, ":9817")
	serve.Flag("store.dsn", "PostgreSQL connection string of the platform database.").
		Envar("STALE_EXPORTER_STORE_DSN").Required().StringVar(&f.storeDSN)
	serve.Flag("docker.host", "Docker Engine API address.").
		Envar("DOCKER_HOST").Default(client.DefaultDockerHost).StringVar(&f.dockerHost)
	serve.Flag("docker.timeout", "Timeout of every Docker API call.").Default("10s").DurationVar(&f.dockerTimeout)
	serve.Flag("docker.adopt", "Create instance rows for containers with docker-watcher labels that the store lacks.").
		BoolVar(&f.adopt)
	serve.Flag("stale.threshold", "Override settings.stale_threshold_days with a duration (e.g. 90s, 36h).").
		DurationVar(&f.threshold)
	serve.Flag("collector.cache-ttl", "Reuse a scan younger than this for later scrapes.").Default("5s").DurationVar(&f.cacheTTL)
	serve.Flag("collector.scan-interval", "Scan in the background this often, scraped or not.").Default("1m").DurationVar(&f.scanInterval)
	serve.Flag("collector.max-snapshot-age", "While scans fail, keep serving the last good snapshot this long.").
		Default("5m").DurationVar(&f.maxSnapshotAge)

	serve.Flag("api.tokens-file", "YAML file of API bearer tokens (name, role, sha256). Without it cleanup endpoints are closed.").
		StringVar(&f.tokensFile)
	serve.Flag("cleanup.workers", "Cleanup jobs carried out at once by this process.").Default("4").IntVar(&f.workers)
	serve.Flag("cleanup.max-per-request", "Most instances one bulk cleanup request may clean.").Default("100").IntVar(&f.maxPerRequest)
	serve.Flag("cleanup.max-stale-ratio", "Refuse bulk and webhook cleanups while more than this share of instances is stale.").
		Default("0.5").Float64Var(&f.maxStaleRatio)
	serve.Flag("cleanup.dry-run", "Make every cleanup a dry run: report, remove nothing.").BoolVar(&f.dryRun)
	serve.Flag("cleanup.wait", "How long a cleanup request waits for its jobs before answering 202.").
		Default("10s").DurationVar(&f.cleanupWait)

	tokenCmd := app.Command("token", "Print a new random API token and its tokens-file entry.")
	tokenName := tokenCmd.Flag("name", "Name of the token, shown in the audit log.").Required().String()
	tokenRole := tokenCmd.Flag("role", "Role of the token.").Required().Enum(
		string(cleanup.RoleViewer), string(cleanup.RoleOperator), string(cleanup.RoleAdmin), string(cleanup.RoleAlertmanager))

	healthCmd := app.Command("healthcheck", "Exit 0 if the exporter at --url is ready (for container health checks).")
	healthURL := healthCmd.Flag("url", "Readiness URL.").Default("http://127.0.0.1:9817/-/ready").String()

	secretsCmd := app.Command("init-secrets", "Create the secrets a docker compose stack shares, unless they exist.")
	secretsDir := secretsCmd.Flag("dir", "Directory to write them to.").Required().String()
	var secretsDB secrets.Database
	secretsCmd.Flag("postgres.host", "Host of the stack's PostgreSQL.").Default("postgres").StringVar(&secretsDB.Host)
	secretsCmd.Flag("postgres.port", "Port of the stack's PostgreSQL.").Default("5432").StringVar(&secretsDB.Port)
	secretsCmd.Flag("postgres.database", "Database name.").Default("platform").StringVar(&secretsDB.Name)
	secretsCmd.Flag("postgres.user", "Database user.").Default("stale").StringVar(&secretsDB.User)

	command := kingpin.MustParse(app.Parse(os.Args[1:]))
	logger := promslog.New(logConfig)
	switch command {
	case serve.FullCommand():
		if err := run(f, logger); err != nil {
			logger.Error("stale-exporter stopped", "err", err)
			os.Exit(1)
		}
	case healthCmd.FullCommand():
		if err := healthcheck(*healthURL); err != nil {
			fmt.Fprintln(os.Stderr, "stale-exporter healthcheck:", err)
			os.Exit(1)
		}
	case secretsCmd.FullCommand():
		admin, err := secrets.Init(*secretsDir, secretsDB)
		if err != nil {
			logger.Error("init secrets", "err", err)
			os.Exit(1)
		}
		if admin != "" {
			// Shown once, in the init container's log, for the operator.
			fmt.Printf("Created secrets in %s. Admin API token (also in %s): %s\n", *secretsDir, secrets.AdminFile, admin)
		}
	case tokenCmd.FullCommand():
		if err := printToken(*tokenName, cleanup.Role(*tokenRole)); err != nil {
			fmt.Fprintln(os.Stderr, "stale-exporter token:", err)
			os.Exit(1)
		}
	}
}

func healthcheck(url string) error {
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

func printToken(name string, role cleanup.Role) error {
	secret, entry, err := cleanup.NewToken(name, role)
	if err != nil {
		return err
	}
	file, err := cleanup.FormatEntries(entry)
	if err != nil {
		return err
	}
	fmt.Printf("# Token (shown once; give it to the client):\n# %s\n# Entry for --api.tokens-file:\n%s", secret, file)
	return nil
}

func run(f serveFlags, logger *slog.Logger) error {
	logger.Info("starting stale-exporter", "version", version.Info(), "build_context", version.BuildContext())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case f.workers < 1:
		return fmt.Errorf("--cleanup.workers must be at least 1, got %d", f.workers)
	case f.maxPerRequest < 1:
		return fmt.Errorf("--cleanup.max-per-request must be at least 1, got %d", f.maxPerRequest)
	case f.maxStaleRatio <= 0 || f.maxStaleRatio > 1:
		return fmt.Errorf("--cleanup.max-stale-ratio must be in (0, 1], got %g", f.maxStaleRatio)
	case f.dockerTimeout <= 0 || f.scanInterval <= 0:
		return errors.New("--docker.timeout and --collector.scan-interval must be positive")
	}
	var tokens *cleanup.Tokens
	if f.tokensFile != "" {
		var err error
		if tokens, err = cleanup.LoadTokens(f.tokensFile); err != nil {
			return err
		}
	} else {
		logger.Warn("no --api.tokens-file: cleanup endpoints and the webhook are closed")
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := store.Open(startCtx, f.storeDSN)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(startCtx); err != nil {
		return err
	}
	docker, err := client.New(client.WithHost(f.dockerHost))
	if err != nil {
		return fmt.Errorf("docker client for %s: %w", f.dockerHost, err)
	}
	defer docker.Close()
	pingCtx, cancelPing := context.WithTimeout(startCtx, f.dockerTimeout)
	defer cancelPing()
	if _, err := docker.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("connect to Docker at %s: %w", f.dockerHost, err)
	}

	scanner := collector.NewScanner(docker, st, collector.Config{
		Threshold:      f.threshold,
		CacheTTL:       f.cacheTTL,
		MaxSnapshotAge: f.maxSnapshotAge,
		DockerTimeout:  f.dockerTimeout,
		Adopt:          f.adopt,
	}, logger)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector.New(scanner, 2*f.dockerTimeout),
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	svc := cleanup.NewService(st, docker, scanner, cleanup.Config{
		Workers:       f.workers,
		Threshold:     f.threshold,
		DockerTimeout: f.dockerTimeout,
		MaxStaleRatio: f.maxStaleRatio,
		DryRun:        f.dryRun,
	}, reg, logger)

	router := httprouter.New()
	cleanup.NewAPI(svc, scanner, cleanup.APIConfig{
		Tokens:        tokens,
		Wait:          f.cleanupWait,
		MaxPerRequest: f.maxPerRequest,
		MaxBodyBytes:  maxBodyBytes,
	}, logger).Register(router)
	router.Handler(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError), Registry: reg,
	}))
	router.HandlerFunc(http.MethodGet, "/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "Healthy")
	})
	router.HandlerFunc(http.MethodGet, "/-/ready", func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(pctx); err != nil {
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
	router.NotFound = cleanup.NotFound(landing)

	go scanner.Run(ctx, f.scanInterval)
	workersDone := make(chan struct{})
	go func() {
		svc.Run(ctx)
		close(workersDone)
	}()

	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(srv, f.web, logger) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down HTTP: %w", err)
	}
	<-workersDone
	return nil
}
