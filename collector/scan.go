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
	// Unowned says whether it also judges the unowned instances whose
	// container it does not list (missing, or named by name); auto (the
	// default) does while no other engine has registered with the store.
	Unowned stale.UnownedMode
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
	// stopped caches Docker's StartedAt and FinishedAt by container id; a
	// stopped container's are fixed until it runs again.
	stopped map[string]runTimes
	// gone caches the full container ids rows hold that the engine answered
	// 404 for: a container id is never reused. Only a scan reads and writes
	// it, and one scan runs at a time (startLocked), so it needs no lock.
	gone map[string]bool
	// refused remembers the containers whose adoption the store refused,
	// so that the refusal is logged once, not every scan; like gone, only
	// the one running scan touches it.
	refused map[string]bool
	// scans counts the scans running, so that shutdown can wait for them.
	scans sync.WaitGroup
}

// NewScanner returns a Scanner over the given Docker engine and store.
func NewScanner(docker Docker, st Store, cfg Config, logger *slog.Logger) *Scanner {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Unowned == "" {
		cfg.Unowned = stale.UnownedAuto
	}
	return &Scanner{docker: docker, store: st, cfg: cfg, logger: logger,
		stopped: map[string]runTimes{}, gone: map[string]bool{}, refused: map[string]bool{}}
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
	// A store that answers but lacks a usable threshold is up, and
	// misconfigured.
	r := Result{DockerUp: dockerErr == nil, StoreUp: storeErr == nil}
	if err := errors.Join(dockerErr, storeErr); err != nil {
		r.Err = err
		return nil, r
	}
	// An out-of-range or unusable threshold fails the scan: the last good
	// snapshot is kept and nothing becomes stale by a wrapped or absurd value.
	if inv.ThresholdErr != nil && s.cfg.Threshold == 0 {
		r.Err = inv.ThresholdErr
		return nil, r
	}
	threshold, err := stale.Threshold(s.cfg.Threshold, inv.ThresholdDays)
	if err != nil {
		r.Err = err
		return nil, r
	}

	listed := newListing(containers)
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

	times, err := s.runTimes(ctx, containers)
	if err != nil {
		r.DockerUp, r.Err = false, err
		return nil, r
	}
	scope := stale.Scope{Host: s.cfg.DockerHost, Unowned: s.cfg.Unowned.JudgesUnowned(inv.OtherEngines)}
	claims, judged := ownership(scope, inv.Instances, listed)
	unlisted := s.lookUpUnlisted(ctx, judged, listed)
	snap := &stale.Snapshot{Threshold: threshold, ScannedAt: now, Scope: scope, Engines: inv.Engines, Observations: make([]stale.Observation, 0, len(inv.Instances))}
	var alive []string
	for _, in := range inv.Instances {
		if claims[in.ID] {
			in.DockerHost = s.cfg.DockerHost
		}
		c := stale.Container{Unknown: true} // another engine's to judge
		if scope.Judges(in) {
			c = s.container(in, listed, times, unlisted)
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

// container is what the scan knows of the container an instance row names.
func (s *Scanner) container(in stale.Instance, listed listing, times map[string]runTimes, unlisted map[string]stale.Container) stale.Container {
	if in.ContainerID == "" {
		return stale.Container{}
	}
	c, ok := listed.lookup(in.ContainerID)
	if !ok {
		c = unlisted[in.ContainerID]
	}
	if !c.Found {
		// A row naming a container that is gone while another carries the
		// instance's label is ambiguous too.
		c.SharedLabel = listed.claimants[in.ID] > 0
		return c
	}
	t := times[c.ID]
	c.StartedAt, c.FinishedAt = t.started, t.finished
	// Counted among the listed containers carrying the label, if it does
	// (one that does not is the rule's "not managed" already).
	c.SharedLabel = listed.claimants[in.ID] > 1
	return c
}

// ownership finds the unowned instances this engine claims (their container
// is in its labelled list and carries their instance id: a container id
// string alone never proves ownership), and the instances it judges.
func ownership(scope stale.Scope, instances []stale.Instance, listed listing) (claims map[string]bool, judged []stale.Instance) {
	claims = map[string]bool{}
	for _, in := range instances {
		if in.DockerHost == "" {
			if c, ok := listed.lookup(in.ContainerID); ok && c.Labels[stale.LabelInstanceID] == in.ID {
				claims[in.ID] = true
				in.DockerHost = scope.Host
			}
		}
		if scope.Judges(in) {
			judged = append(judged, in)
		}
	}
	return claims, judged
}

// listing is one labelled ContainerList, indexed for the scan.
type listing struct {
	byID map[string]containerSummary
	// claimants counts the listed containers carrying each instance id.
	claimants map[string]int
}

func newListing(containers []containerSummary) listing {
	l := listing{byID: make(map[string]containerSummary, 2*len(containers)), claimants: map[string]int{}}
	for _, c := range containers {
		l.byID[c.id] = c
		l.byID[stale.ShortID(c.id)] = c
		l.claimants[c.labels[stale.LabelInstanceID]]++
	}
	return l
}

// lookup finds the container an instance row names, by its full id or by an
// abbreviated one of at least 12 characters (as docker ps shows them).
func (l listing) lookup(id string) (stale.Container, bool) {
	if len(id) < 12 {
		return stale.Container{}, false
	}
	c, ok := l.byID[id]
	if !ok {
		c, ok = l.byID[stale.ShortID(id)]
	}
	if !ok || !strings.HasPrefix(c.id, id) {
		return stale.Container{}, false
	}
	return stale.Container{ID: c.id, Found: true, State: c.state, Labels: c.labels, Created: c.created}, true
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
func (s *Scanner) lookUpUnlisted(ctx context.Context, instances []stale.Instance, listed listing) map[string]stale.Container {
	out := map[string]stale.Container{}
	var refs []string
	for _, in := range instances {
		ref := in.ContainerID
		if ref == "" {
			continue
		}
		if _, ok := listed.lookup(ref); ok {
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
		if !c.Found && !c.Unknown && stale.IsFullContainerID(ref) {
			gone[ref] = true
		}
	}
	s.gone = gone
	return out
}

// runTimes are Docker's StartedAt and FinishedAt of a stopped container.
type runTimes struct{ started, finished time.Time }

// runTimes returns StartedAt and FinishedAt for every stopped container,
// inspecting only those not cached yet, and forgets containers that are gone
// or running.
func (s *Scanner) runTimes(ctx context.Context, containers []containerSummary) (map[string]runTimes, error) {
	s.mu.Lock()
	known := s.stopped
	s.mu.Unlock()

	times := make(map[string]runTimes, len(containers))
	var missing []string
	for _, c := range containers {
		if (stale.Container{Found: true, State: c.state}).Running() {
			continue
		}
		if t, ok := known[c.id]; ok {
			times[c.id] = t
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
			// A container removed between list and inspect has no run
			// times to offer.
			c, err := engine.Inspect(ctx, s.docker, id, s.cfg.DockerTimeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			times[id] = runTimes{started: c.StartedAt, finished: c.FinishedAt}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	s.mu.Lock()
	s.stopped = times
	s.mu.Unlock()
	return times, nil
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
		if known[id] || project == "" || stage == "" || stale.ValidID(id) != nil || s.refused[c.id] {
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
		if errors.Is(err, store.ErrAdoptionRefused) {
			// The platform will not take it (an id its column cannot hold,
			// a constraint of its own): said once, and the scan goes on.
			s.refused[c.id] = true
			s.logger.Warn("container not adopted", "container_id", c.id, "instance_id", id, "err", err)
			continue
		}
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
