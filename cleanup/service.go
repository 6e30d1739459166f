// Package cleanup carries out cleanup jobs. Whoever asks (one instance, a
// bulk request, an Alertmanager alert), the request becomes a durable job in
// the store, and one path carries it out: re-check live state against Docker
// and the store, mark the instance removing and pin the job to what was
// judged, check again that nothing changed, remove the container by its full
// id, delete the row, write the event. Any failed check is a skip with a
// reason and a code, never a removal. It returns domain outcomes; the HTTP
// surface is internal/api.
package cleanup

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// ErrUnknownInstance is returned for an instance that does not exist and was
// never removed by this service.
var ErrUnknownInstance = errors.New("unknown instance")

// Docker is the part of the Docker engine a cleanup uses (internal/docker).
type Docker interface {
	Inspect(ctx context.Context, ref string) (stale.Container, error)
	Labelled(ctx context.Context, instanceID string) ([]string, error)
	// Remove removes a container by its full id, never forced, with its
	// anonymous volumes when volumes; it fails with docker.ErrNotFound or
	// docker.ErrConflict.
	Remove(ctx context.Context, id string, volumes bool) error
	// VolumesGone says which of the named volumes the engine no longer has.
	VolumesGone(ctx context.Context, names []string) ([]string, error)
}

// Store is the part of the store a cleanup uses.
type Store interface {
	Instance(ctx context.Context, id string) (stale.Instance, error)
	ThresholdDays(ctx context.Context) (int64, error)
	OtherEngines(ctx context.Context, name string) (int, error)
	EnqueueJob(ctx context.Context, req store.JobRequest) (store.Job, bool, error)
	LeaseJob(ctx context.Context, lease time.Duration, dockerHost string, unowned stale.UnownedMode) (store.Job, bool, error)
	MarkRemoving(ctx context.Context, job store.Job, checkedStatus, target string, judged time.Time) error
	FinishRemoved(ctx context.Context, job store.Job, event func(rowKept bool) store.Event) error
	FinishJob(ctx context.Context, job store.Job, result store.JobResult, code, reason string, event store.Event) error
	RetryJob(ctx context.Context, job store.Job, code, reason string, after time.Duration) error
	Jobs(ctx context.Context, ids []int64) ([]store.Job, error)
	RecentJobs(ctx context.Context, limit int) ([]store.Job, error)
	LastRemoval(ctx context.Context, instanceID string) (store.Job, bool, error)
	RecordAlert(ctx context.Context, occ store.AlertOccurrence, event store.Event, cleanup *store.JobRequest) (bool, store.Job, error)
	ExpirableJobs(ctx context.Context, createdBefore time.Time, limit int) ([]store.Job, error)
	ExpireJob(ctx context.Context, job store.Job, result store.JobResult, code, reason string, event store.Event) error
	Prune(ctx context.Context, before time.Time) (store.Pruned, error)
	KeepInstance(ctx context.Context, id string, keep stale.Keep) error
	UnkeepInstance(ctx context.Context, id, by string) error
}

// Scans gives the latest scan (internal/scan's Scanner), for the bulk list
// and the mass-stale guard, and the disk the scans measured a container to
// hold, for the bytes a removal reclaims; a keep expires the cached scan.
type Scans interface {
	Result(ctx context.Context) scan.Result
	Reclaimable(containerID string) (int64, bool)
	Expire()
}

// Config tunes a Service.
type Config struct {
	// Config is how the exporter judges, shared with its scans.
	stale.Config
	Workers int
	// Lease is how long a leased job is a worker's before another may
	// resume it; it must outlast a job's Docker calls (default 50s).
	Lease time.Duration
	// MaxStaleRatio: above this share of stale instances, bulk and webhook
	// cleanups refuse.
	MaxStaleRatio float64
	// DryRun makes every request a dry run.
	DryRun bool
	// Grace is how long an instance must have been stale before an
	// automatic (webhook) cleanup may remove it: people are told first. A
	// person's cleanup does not wait. 0 means no grace.
	Grace time.Duration
	// KeepVolumes keeps a removed container's anonymous volumes (else they
	// go with it, as docker rm -v; named volumes never do).
	KeepVolumes bool
	// PollInterval is how often idle workers look for jobs other replicas added.
	PollInterval time.Duration
	// StoreTimeout bounds the store work of one request (default 5s), so
	// that a hanging PostgreSQL answers 503 instead of holding clients.
	StoreTimeout time.Duration
	// MaxAttempts bounds how often a job whose check could not tell (engine
	// or store unreachable) is tried (default 5); RetryBackoff is the first
	// wait between tries, doubled each time (default 1s).
	MaxAttempts  int
	RetryBackoff time.Duration
	// JobExpiry closes a job nobody carried out within it (its engine's
	// exporter never came back); 0 means never. Retention deletes this
	// service's finished records older than it; 0 means never.
	JobExpiry, Retention time.Duration
	// MaintainInterval is how often expiry and retention run (default 10m).
	MaintainInterval time.Duration
}

// Service runs cleanup jobs.
type Service struct {
	store   Store
	docker  Docker
	scans   Scans
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	wake    chan struct{}
}

// NewService returns a Service and registers its metrics with reg.
func NewService(st Store, docker Docker, scans Scans, cfg Config, reg prometheus.Registerer, logger *slog.Logger) *Service {
	cfg.Config = cfg.Config.WithDefaults()
	if cfg.Lease <= 0 {
		cfg.Lease = 50 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.MaintainInterval <= 0 {
		cfg.MaintainInterval = 10 * time.Minute
	}
	return &Service{
		store: st, docker: docker, scans: scans, cfg: cfg, logger: logger,
		metrics: newMetrics(reg, cfg.Grace),
		wake:    make(chan struct{}, max(cfg.Workers, 1)),
	}
}
