// Package collector scans the Docker engine and the store, judges every
// instance with the stale rule, and exports the result to Prometheus.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/engine"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Docker is the part of the Docker Engine API a scan uses.
type Docker interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Store is the part of the store a scan uses.
type Store interface {
	ReadInventory(ctx context.Context, dockerHost string) (store.Inventory, error)
	Claim(ctx context.Context, dockerHost string, ids []string) error
	MarkAlive(ctx context.Context, ids []string, at time.Time) error
	Adopt(ctx context.Context, a store.Adoption) error
}

// Config tunes a Scanner.
type Config struct {
	// Threshold overrides settings.stale_threshold_days when positive.
	Threshold time.Duration
	// CacheTTL is how long a scan is reused by later scrapes.
	CacheTTL time.Duration
	// MaxSnapshotAge bounds how long the last good snapshot is served while
	// scans fail.
	MaxSnapshotAge time.Duration
	// DockerTimeout bounds every Docker call.
	DockerTimeout time.Duration
	// Adopt creates instance rows for labelled containers the store lacks.
	Adopt bool
	// DockerHost names the engine this scanner watches: it judges the
	// instances that engine owns, and claims the unowned ones whose
	// container it lists.
	DockerHost string
	// ClaimUnowned also judges the unowned instances whose container it does
	// not list (missing, or named by name): the single-host behaviour. With
	// several hosts, at most one exporter should.
	ClaimUnowned bool
	// Now is the scanner's clock (the stale rule's, the cache's and the
	// snapshot age's); nil means time.Now. Tests move it instead of sleeping.
	Now func() time.Time
}

// Result is what a scrape or an API call gets: the outcome of the latest
// scan and the last good snapshot, if it is recent enough.
type Result struct {
	Snapshot *stale.Snapshot
	Success  bool
	DockerUp bool
	StoreUp  bool
	Duration time.Duration
	// LastSuccess is the time of the last successful scan, zero if none.
	LastSuccess time.Time
	Err         error
	// Seq numbers the scans of a Scanner, from 1; 0 is no scan yet.
	Seq uint64
}

// Scanner runs scans, coalescing concurrent requests into one.
type Scanner struct {
	docker Docker
	store  Store
	cfg    Config
	logger *slog.Logger

	mu       sync.Mutex
	inflight chan struct{} // closed when the running scan ends
	latest   Result
	good     *stale.Snapshot
	attempt  time.Time // when the latest scan started
	seq      uint64    // scans finished
	// finishedAt caches Docker's FinishedAt by container id; a stopped
	// container's is fixed until it runs again.
	finishedAt map[string]time.Time
	// gone caches the full container ids rows hold that the engine answered
	// 404 for: a container id is never reused.
	gone map[string]bool
	// scans counts the scans running, so that shutdown can wait for them.
	scans sync.WaitGroup
}

// NewScanner returns a Scanner over the given Docker engine and store.
func NewScanner(docker Docker, st Store, cfg Config, logger *slog.Logger) *Scanner {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Scanner{docker: docker, store: st, cfg: cfg, logger: logger,
		finishedAt: map[string]time.Time{}, gone: map[string]bool{}}
}

// Now is the time by the Scanner's clock.
func (s *Scanner) Now() time.Time { return s.cfg.Now() }

// Wait blocks until the scans started so far have ended.
func (s *Scanner) Wait() { s.scans.Wait() }

// Result returns the outcome of a scan no older than the cache TTL, running
// one if needed. Callers that arrive while a scan runs share it.
func (s *Scanner) Result(ctx context.Context) Result {
	return s.await(ctx, func() bool { return s.attempt.IsZero() || s.cfg.Now().Sub(s.attempt) > s.cfg.CacheTTL })
}

// Latest is Result for those who need only the snapshot and whether the
// latest scan succeeded.
func (s *Scanner) Latest(ctx context.Context) (snap *stale.Snapshot, succeeded bool, err error) {
	r := s.Result(ctx)
	return r.Snapshot, r.Success, r.Err
}

// Rescan runs a fresh scan (or joins the one running) and returns its result.
func (s *Scanner) Rescan(ctx context.Context) Result {
	return s.await(ctx, func() bool { return true })
}

// await starts a scan if none runs and stale() says so, then waits for the
// running scan, if any, or for ctx.
func (s *Scanner) await(ctx context.Context, stale func() bool) Result {
	s.mu.Lock()
	if s.inflight == nil && stale() {
		s.startLocked()
	}
	done := s.inflight
	s.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resultLocked()
}

// Run scans every interval until ctx is done, so that last_alive_at
// advances even when nothing scrapes.
func (s *Scanner) Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		s.Rescan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (s *Scanner) resultLocked() Result {
	r := s.latest
	if s.good != nil {
		r.LastSuccess = s.good.ScannedAt
		if s.cfg.Now().Sub(s.good.ScannedAt) <= s.cfg.MaxSnapshotAge {
			r.Snapshot = s.good
		}
	}
	return r
}

// startLocked starts a scan detached from any caller: one scrape giving up
// must not cancel the scan the others wait for.
func (s *Scanner) startLocked() {
	done := make(chan struct{})
	s.inflight = done
	s.attempt = s.cfg.Now()
	s.scans.Add(1)
	go func() {
		defer s.scans.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 4*s.cfg.DockerTimeout)
		defer cancel()
		start := time.Now()
		snap, r := s.scan(ctx)
		r.Duration = time.Since(start)
		s.mu.Lock()
		if r.Success {
			s.good = snap
		} else {
			s.logger.Warn("scan failed", "err", r.Err)
		}
		s.seq++
		r.Seq = s.seq
		s.latest = r
		s.inflight = nil
		s.mu.Unlock()
		close(done)
	}()
}

func (s *Scanner) scan(ctx context.Context) (*stale.Snapshot, Result) {
	now := s.cfg.Now()
	var (
		wg         sync.WaitGroup
		containers []containerSummary
		inv        store.Inventory
		dockerErr  error
		storeErr   error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		containers, dockerErr = s.listContainers(ctx)
	}()
	go func() {
		defer wg.Done()
		inv, storeErr = s.store.ReadInventory(ctx, s.cfg.DockerHost)
	}()
	wg.Wait()
	// A store that answers but lacks its settings row is up, and misconfigured.
	r := Result{DockerUp: dockerErr == nil, StoreUp: storeErr == nil || errors.Is(storeErr, store.ErrNoSettings)}
	if err := errors.Join(dockerErr, storeErr); err != nil {
		r.Err = err
		return nil, r
	}
	// An out-of-range threshold fails the scan: the last good snapshot is
	// kept and nothing becomes stale by a wrapped or absurd value.
	threshold, err := stale.Threshold(s.cfg.Threshold, inv.ThresholdDays)
	if err != nil {
		r.Err = err
		return nil, r
	}

	byID := make(map[string]containerSummary, 2*len(containers))
	for _, c := range containers {
		byID[c.id] = c
		byID[stale.ShortID(c.id)] = c
	}
	if s.cfg.Adopt {
		adopted, err := s.adopt(ctx, inv, containers)
		if err != nil {
			r.StoreUp, r.Err = false, err
			return nil, r
		}
		if adopted > 0 {
			if inv, err = s.store.ReadInventory(ctx, s.cfg.DockerHost); err != nil {
				r.StoreUp, r.Err = false, err
				return nil, r
			}
		}
	}

	finished, err := s.finishedTimes(ctx, containers)
	if err != nil {
		r.DockerUp, r.Err = false, err
		return nil, r
	}
	claims, judged := s.ownership(inv.Instances, byID)
	unlisted := s.lookUpUnlisted(ctx, judged, byID)
	snap := &stale.Snapshot{Threshold: threshold, ScannedAt: now, Observations: make([]stale.Observation, 0, len(inv.Instances))}
	var alive []string
	for _, in := range inv.Instances {
		if claims[in.ID] {
			in.DockerHost = s.cfg.DockerHost
		}
		c := stale.Container{Unknown: true} // another engine's to judge
		if judges(in, s.cfg) {
			if sum, ok := lookup(byID, in.ContainerID); ok {
				c = stale.Container{Found: true, State: sum.state, Labels: sum.labels, Created: sum.created, FinishedAt: finished[sum.id]}
			} else if in.ContainerID != "" {
				c = unlisted[in.ContainerID]
			} else {
				c = stale.Container{}
			}
		}
		v := stale.Judge(in, c, threshold, now)
		if c.Running() {
			alive = append(alive, in.ID)
			in.LastAliveAt = now
		}
		snap.Observations = append(snap.Observations, stale.Observation{Instance: in, Container: c, Verdict: v})
	}
	if err := s.store.MarkAlive(ctx, alive, now); err != nil {
		r.StoreUp, r.Err = false, err
		return nil, r
	}
	if err := s.store.Claim(ctx, s.cfg.DockerHost, slices.Collect(maps.Keys(claims))); err != nil {
		r.StoreUp, r.Err = false, err
		return nil, r
	}
	r.Success = true
	return snap, r
}

// ownership finds the unowned instances this engine claims (their container
// is in its labelled list and carries their instance id: a container id
// string alone never proves ownership), and the instances it judges.
func (s *Scanner) ownership(instances []stale.Instance, byID map[string]containerSummary) (claims map[string]bool, judged []stale.Instance) {
	claims = map[string]bool{}
	for _, in := range instances {
		if in.DockerHost == "" {
			if sum, ok := lookup(byID, in.ContainerID); ok && sum.labels[stale.LabelInstanceID] == in.ID {
				claims[in.ID] = true
				in.DockerHost = s.cfg.DockerHost
			}
		}
		if judges(in, s.cfg) {
			judged = append(judged, in)
		}
	}
	return claims, judged
}

// judges reports whether a scanner judges an instance: its engine owns it,
// or nobody does and it claims the unowned.
func judges(in stale.Instance, cfg Config) bool {
	return in.DockerHost == cfg.DockerHost || (in.DockerHost == "" && cfg.ClaimUnowned)
}

// lookup finds the container an instance row names, by its full id or by an
// abbreviated one of at least 12 characters (as docker ps shows them).
func lookup(byID map[string]containerSummary, id string) (containerSummary, bool) {
	if len(id) < 12 {
		return containerSummary{}, false
	}
	c, ok := byID[id]
	if !ok {
		c, ok = byID[stale.ShortID(id)]
	}
	return c, ok && strings.HasPrefix(c.id, id)
}

// containerSummary is the part of a ContainerList entry a scan keeps.
type containerSummary struct {
	id      string
	state   string
	image   string
	labels  map[string]string
	created time.Time
}

func (s *Scanner) listContainers(ctx context.Context) ([]containerSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DockerTimeout)
	defer cancel()
	res, err := s.docker.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", stale.LabelInstanceID),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]containerSummary, len(res.Items))
	for i, c := range res.Items {
		out[i] = containerSummary{id: c.ID, state: string(c.State), image: c.Image, labels: c.Labels, created: time.Unix(c.Created, 0)}
	}
	return out, nil
}

// inspectConcurrency bounds parallel inspects on a cold cache.
const inspectConcurrency = 8

// maxUnlistedLookups bounds the inspects one scan spends on rows whose
// container is not in the labelled list; the rest stay unknown (never
// stale) until a later scan looks them up.
const maxUnlistedLookups = 100

// lookUpUnlisted asks Docker about the containers rows name (by id or name)
// that the labelled list lacks: such a container may run without the
// platform's label. Only the engine's 404 makes one missing; a container not
// looked up, or that Docker could not describe, is returned as unknown.
func (s *Scanner) lookUpUnlisted(ctx context.Context, instances []stale.Instance, byID map[string]containerSummary) map[string]stale.Container {
	out := map[string]stale.Container{}
	var refs []string
	for _, in := range instances {
		ref := in.ContainerID
		if ref == "" {
			continue
		}
		if _, listed := lookup(byID, ref); listed {
			continue
		}
		if _, seen := out[ref]; seen {
			continue
		}
		if s.gone[ref] {
			out[ref] = stale.Container{}
			continue
		}
		out[ref] = stale.Container{Unknown: true}
		refs = append(refs, ref)
	}
	if len(refs) > maxUnlistedLookups {
		s.logger.Info("more unlisted containers than one scan looks up; the rest stay unknown for now",
			"unlisted", len(refs), "looked_up", maxUnlistedLookups)
		refs = refs[:maxUnlistedLookups]
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, inspectConcurrency)
	)
	for _, ref := range refs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := engine.Inspect(ctx, s.docker, ref, s.cfg.DockerTimeout)
			if err != nil {
				s.logger.Debug("look up unlisted container", "container", ref, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			out[ref] = c
		}()
	}
	wg.Wait()

	gone := map[string]bool{}
	for ref, c := range out {
		if !c.Found && !c.Unknown && isFullID(ref) {
			gone[ref] = true
		}
	}
	s.gone = gone
	return out
}

// isFullID reports whether ref is a full 64-hex container id.
func isFullID(ref string) bool {
	if len(ref) != 64 {
		return false
	}
	for _, c := range ref {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// finishedTimes returns FinishedAt for every stopped container, inspecting
// only those not cached yet, and forgets containers that are gone or running.
func (s *Scanner) finishedTimes(ctx context.Context, containers []containerSummary) (map[string]time.Time, error) {
	s.mu.Lock()
	known := s.finishedAt
	s.mu.Unlock()

	finished := make(map[string]time.Time, len(containers))
	var missing []string
	for _, c := range containers {
		if (stale.Container{Found: true, State: c.state}).Running() {
			continue
		}
		if t, ok := known[c.id]; ok {
			finished[c.id] = t
		} else {
			missing = append(missing, c.id)
		}
	}

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, inspectConcurrency)
	)
	for _, id := range missing {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t, err := s.finishedAtOf(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			finished[id] = t
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	s.mu.Lock()
	s.finishedAt = finished
	s.mu.Unlock()
	return finished, nil
}

func (s *Scanner) finishedAtOf(ctx context.Context, id string) (time.Time, error) {
	// A container removed between list and inspect has no stop time to offer.
	c, err := engine.Inspect(ctx, s.docker, id, s.cfg.DockerTimeout)
	return c.FinishedAt, err
}

func (s *Scanner) adopt(ctx context.Context, inv store.Inventory, containers []containerSummary) (int, error) {
	known := make(map[string]bool, len(inv.Instances))
	for _, in := range inv.Instances {
		known[in.ID] = true
	}
	adopted := 0
	for _, c := range containers {
		id := c.labels[stale.LabelInstanceID]
		project, stage := c.labels[stale.LabelProject], c.labels[stale.LabelStage]
		if known[id] || project == "" || stage == "" || !stale.IsUUID(id) {
			continue
		}
		status := stale.StatusStopped
		if (stale.Container{Found: true, State: c.state}).Running() {
			status = stale.StatusRunning
		}
		err := s.store.Adopt(ctx, store.Adoption{
			InstanceID: id, ProjectName: project, StageName: stage,
			ContainerID: c.id, ImageTag: imageTag(c), Status: status, CreatedAt: c.created,
		})
		if err != nil {
			return adopted, err
		}
		s.logger.Info("adopted container", "container_id", c.id, "instance_id", id, "project_name", project, "stage_name", stage)
		adopted++
	}
	return adopted, nil
}

func imageTag(c containerSummary) string {
	if tag := c.labels[stale.LabelImageTag]; tag != "" {
		return tag
	}
	ref := c.image
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		return ref[i+1:]
	}
	return "latest"
}
