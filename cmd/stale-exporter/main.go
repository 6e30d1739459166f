// Command stale-exporter finds the containers a deploy platform left behind,
// exports them to Prometheus and cleans them up on request.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"golang.org/x/term"

	"github.com/docker-watcher/stale-exporter/internal/app"
	operator "github.com/docker-watcher/stale-exporter/internal/cli"
	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/secrets"
	"github.com/docker-watcher/stale-exporter/internal/stale"
)

func main() {
	cli := kingpin.New("stale-exporter", "Exports containers a deploy platform left behind, and cleans them up.")
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(cli, logConfig)
	cli.Version(version.Print("stale-exporter"))
	cli.HelpFlag.Short('h')

	serve := cli.Command("serve", "Run the exporter (the default).").Default()
	var f app.Config
	f.Web = kingpinflag.AddFlags(serve, ":9817")
	serve.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.TelemetryPath)
	serve.Flag("web.read-timeout", "Longest time to read a whole request, body included.").Default("30s").DurationVar(&f.ReadTimeout)
	serve.Flag("web.write-timeout", "Longest time to answer a request; must outlast --cleanup.wait.").Default("1m").DurationVar(&f.WriteTimeout)
	serve.Flag("web.idle-timeout", "How long an idle keep-alive connection is kept.").Default("1m").DurationVar(&f.IdleTimeout)
	serve.Flag("web.max-requests", "Most scrapes of /metrics served at once; more get 503. 0 means no limit.").
		Default("40").IntVar(&f.MaxRequests)
	serve.Flag("store.dsn", "PostgreSQL connection string of the platform database (default: the local socket, database "+app.LocalDatabase+").").
		Envar("STALE_EXPORTER_STORE_DSN").StringVar(&f.StoreDSN)
	serve.Flag("store.timeout", "Longest time a request waits for PostgreSQL before answering 503.").Default("5s").DurationVar(&f.StoreTimeout)
	serve.Flag("docker.host", "Docker Engine API address.").
		Envar("DOCKER_HOST").Default(docker.DefaultAddr).StringVar(&f.DockerAddr)
	serve.Flag("docker.timeout", "Timeout of every Docker API call.").Default("10s").DurationVar(&f.DockerTimeout)
	serve.Flag("docker.events", "Keep a view of the engine by its event stream (list once, then watch), instead of listing it on every scan; --no-docker.events lists.").
		Default("true").BoolVar(&f.DockerEvents)
	serve.Flag("docker.resync-interval", "List the engine in full this often to repair the view (with --docker.events).").
		Default("10m").DurationVar(&f.DockerResync)
	serve.Flag("store.changes", "Keep the inventory by the store's announcements (LISTEN/NOTIFY: read once, then what changed) instead of reading it on every scan; --no-store.changes reads.").
		Default("true").BoolVar(&f.StoreChanges)
	serve.Flag("store.resync-interval", "Read the inventory in full this often (with --store.changes).").
		Default("10m").DurationVar(&f.StoreResync)
	serve.Flag("store.alive-write-interval", "Write last_alive_at of a running instance, and the engine's heartbeat, at most this often (at once when it starts or stops; 0: every scan).").
		Default("5m").DurationVar(&f.AliveWriteInterval)
	serve.Flag("docker.host-name", "Name of the Docker engine, the docker_host label (default: the engine's name from /info).").
		StringVar(&f.DockerHostName)
	serve.Flag("docker.claim-unowned", "Judge and clean the instances no engine owns yet: auto (while no other engine has registered with the store), true or false.").
		Default(string(stale.UnownedAuto)).EnumVar((*string)(&f.Unowned), stale.UnownedModes...)
	serve.Flag("docker.adopt", "Create instance rows for containers with docker-watcher labels that the store lacks.").
		BoolVar(&f.Adopt)
	serve.Flag("stale.threshold", "Override settings.stale_threshold_days with a duration (e.g. 90s, 36h; at most 100 years).").
		DurationVar(&f.Threshold)
	serve.Flag("collector.cache-ttl", "Reuse a scan younger than this for later scrapes.").Default("5s").DurationVar(&f.CacheTTL)
	serve.Flag("collector.scan-interval", "Scan in the background this often, scraped or not.").Default("1m").DurationVar(&f.ScanInterval)
	serve.Flag("collector.max-snapshot-age", "While scans fail, keep serving the last good snapshot this long.").
		Default("5m").DurationVar(&f.MaxSnapshotAge)

	serve.Flag("api.tokens-file", "YAML file of API bearer tokens (name, role, sha256). Without it cleanup endpoints are closed.").
		StringVar(&f.TokensFile)
	serve.Flag("cleanup.workers", "Cleanup jobs carried out at once by this process.").Default("4").IntVar(&f.Workers)
	serve.Flag("cleanup.max-per-request", "Most instances one bulk cleanup request may clean.").Default("100").IntVar(&f.MaxPerRequest)
	serve.Flag("cleanup.max-stale-ratio", "Refuse bulk and webhook cleanups while more than this share of instances is stale.").
		Default("0.5").Float64Var(&f.MaxStaleRatio)
	serve.Flag("cleanup.dry-run", "Make every cleanup a dry run: report, remove nothing.").BoolVar(&f.DryRun)
	serve.Flag("cleanup.grace", "How long an instance must have been stale before an automatic (webhook) cleanup may remove it; people are told first. A person's cleanup does not wait.").
		Default("24h").DurationVar(&f.Grace)
	serve.Flag("cleanup.keep-volumes", "Keep the anonymous volumes of removed containers (by default they go with them, as docker rm -v; named volumes never do).").
		BoolVar(&f.KeepVolumes)
	serve.Flag("cleanup.wait", "How long a cleanup request waits for its jobs before answering 202.").
		Default("10s").DurationVar(&f.CleanupWait)
	serve.Flag("cleanup.job-expiry", "Close, with a reason, the cleanup jobs no exporter of their engine carried out within this (0: never).").
		Default("24h").DurationVar(&f.JobExpiry)
	serve.Flag("store.retention", "Delete this service's finished jobs, alert occurrences and own events older than this (0: keep all).").
		Default("2160h").DurationVar(&f.Retention)

	tokens := addTokenCommands(cli)

	healthCmd := cli.Command("healthcheck", "Exit 0 if the exporter at --url is ready (for container health checks).")
	healthURL := healthCmd.Flag("url", "Readiness URL.").Default("http://127.0.0.1:9817/-/ready").String()

	secretsCmd := cli.Command("init-secrets", "Create the secrets a docker compose stack shares, unless they exist.")
	secretsDir := secretsCmd.Flag("dir", "Directory to write them to.").Required().String()
	var secretsDB secrets.Database
	secretsCmd.Flag("postgres.host", "Host of the stack's PostgreSQL.").Default("postgres").StringVar(&secretsDB.Host)
	secretsCmd.Flag("postgres.port", "Port of the stack's PostgreSQL.").Default("5432").StringVar(&secretsDB.Port)
	secretsCmd.Flag("postgres.database", "Database name.").Default("platform").StringVar(&secretsDB.Name)
	secretsCmd.Flag("postgres.user", "Database user.").Default("stale").StringVar(&secretsDB.User)

	client := operator.AddCommands(cli)

	command := kingpin.MustParse(cli.Parse(os.Args[1:]))
	logger := promslog.New(logConfig)
	switch {
	case command == serve.FullCommand():
		if err := run(f, logger); err != nil {
			logger.Error("stale-exporter failed", "err", err)
			os.Exit(1)
		}
	case command == healthCmd.FullCommand():
		if err := app.Healthcheck(*healthURL); err != nil {
			fmt.Fprintln(os.Stderr, "stale-exporter healthcheck:", err)
			os.Exit(1)
		}
	case command == secretsCmd.FullCommand():
		admin, err := secrets.Init(*secretsDir, secretsDB)
		if err != nil {
			logger.Error("init secrets", "err", err)
			os.Exit(1)
		}
		if admin != "" {
			// Shown once, in the init container's log, for the operator.
			fmt.Printf("Created secrets in %s. Admin API token (also in %s): %s\n", *secretsDir, secrets.AdminFile, admin)
		}
	case client.Handles(command):
		terminal := operator.Terminal{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Interactive: term.IsTerminal(int(os.Stdin.Fd()))}
		if err := client.Run(context.Background(), command, terminal); err != nil {
			fmt.Fprintf(os.Stderr, "stale-exporter %s: %v\n", command, err)
			os.Exit(1)
		}
	case tokens.handles(command):
		if err := tokens.run(command, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "stale-exporter %s: %v\n", command, err)
			os.Exit(1)
		}
	}
}

// run starts the exporter and serves until SIGINT or SIGTERM.
func run(cfg app.Config, logger *slog.Logger) error {
	logger.Info("starting stale-exporter", "version", version.Info(), "build_context", version.BuildContext())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exporter, err := app.New(cfg, logger)
	if err != nil {
		return err
	}
	// SIGHUP reloads the tokens file, as POST /-/reload does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := exporter.Reload(); err != nil {
				logger.Error("reload on SIGHUP", "err", err)
			}
		}
	}()
	return exporter.Run(ctx)
}
