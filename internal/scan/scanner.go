// Package scan is the core of stale-exporter: a scan reads the Docker engine
// and the store, judges every instance with the stale rule and returns a
// snapshot. The Scanner runs scans coalesced (concurrent callers share one)
// and cached (a scan younger than the cache TTL is reused), keeps the last
// good snapshot for a bounded time while scans fail, and runs one in the
// background every interval so that last_alive_at advances unscraped.
package scan

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Docker is the part of the Docker engine a scan uses (internal/docker).
type Docker interface {
	List(ctx context.Context) ([]stale.Container, error)
	Inspect(ctx context.Context, ref string) (stale.Container, error)
	Size(ctx context.Context, id string) (int64, error)
	VolumeSizes(ctx context.Context) (map[string]int64, error)
}

// Store is the part of the store a scan uses.
type Store interface {
	ReadInventory(ctx context.Context, dockerHost string) (store.Inventory, error)
	Own(ctx context.Context, dockerHost string, ids []string) error
	MarkAlive(ctx context.Context, at map[string]time.Time) error
	Adopt(ctx context.Context, a store.Adoption) error
}

// Config tunes a Scanner.
type Config struct {
	// Config is how the exporter judges, shared with its cleanups.
	stale.Config
	// CacheTTL is how long a scan is reused by later callers.
	CacheTTL time.Duration
	// MaxSnapshotAge bounds how long the last good snapshot is served while
	// scans fail.
	MaxSnapshotAge time.Duration
	// Timeout bounds one whole scan (each Docker call is bounded by the
	// engine's own timeout).
	Timeout time.Duration
	// Adopt creates instance rows for labelled containers the store lacks.
	Adopt bool
	// AliveWriteInterval is how often last_alive_at of a running instance
	// is written (0: on every scan).
	AliveWriteInterval time.Duration
	// Live reports whether what a scan reads is kept by events and
	// announcements (a view of the engine, a feed of the store), which say
	// when it changes: a scan then stays current for LiveTTL, until a
	// change outdates it or time alone changes a verdict, instead of
	// CacheTTL.
	Live    func() bool
	LiveTTL time.Duration
}

// Result is what a caller gets: the outcome of the latest scan and the last
// good snapshot, if it is recent enough.
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
//
// Locking: mu guards the fields from inflight to reclaimable, which callers
// and the running scan share. The caches gone, written and refused are only
// ever touched by the running scan, and one scan runs at a time
// (startLocked starts one only while inflight is nil), so they need no lock.
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
	// changesAt is when time alone changes a verdict of the latest good
	// scan (zero: never): it is outdated then.
	changesAt time.Time
	// started numbers the scans started; a scan numbered at or below
	// expired read the store before a change that Expire announced.
	started, expired uint64
	// stopped caches Docker's StartedAt and FinishedAt by container id; a
	// stopped container's are fixed until it runs again.
	stopped map[string]runTimes
	// reclaimable caches the disk a stale container holds, by container id:
	// a stopped container does not change, and measuring costs the engine.
	reclaimable map[string]int64

	// gone caches the full container ids rows hold that the engine answered
	// 404 for: a container id is never reused.
	gone map[string]bool
	// written is when the scans last wrote last_alive_at of each instance
	// seen running.
	written map[string]time.Time
	// refused remembers the containers whose adoption the store refused,
	// so that the refusal is logged once, not every scan.
	refused map[string]bool
	// scans counts the scans running, so that shutdown can wait for them.
	scans sync.WaitGroup
}

// NewScanner returns a Scanner over the given Docker engine and store.
func NewScanner(docker Docker, st Store, cfg Config, logger *slog.Logger) *Scanner {
	cfg.Config = cfg.Config.WithDefaults()
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	return &Scanner{docker: docker, store: st, cfg: cfg, logger: logger,
		stopped: map[string]runTimes{}, gone: map[string]bool{}, written: map[string]time.Time{}, refused: map[string]bool{}, reclaimable: map[string]int64{}}
}

// Wait blocks until the scans started so far have ended.
func (s *Scanner) Wait() { s.scans.Wait() }

// Result returns the outcome of a scan no older than the cache TTL and
// started after the latest Expire, running one if needed. Callers that
// arrive while a scan runs share it.
func (s *Scanner) Result(ctx context.Context) Result {
	return s.await(ctx, func() bool {
		now := s.cfg.Now()
		ttl := s.cfg.CacheTTL
		if s.cfg.Live != nil && s.cfg.Live() {
			ttl = max(ttl, s.cfg.LiveTTL)
		}
		return s.attempt.IsZero() || now.Sub(s.attempt) > ttl || s.started <= s.expired ||
			!s.changesAt.IsZero() && !now.Before(s.changesAt)
	})
}

// Rescan runs a fresh scan (or joins the one running) and returns its
// result. A scan that started after the call satisfies it: one an
// Expire made another caller start meanwhile is not followed by a third.
func (s *Scanner) Rescan(ctx context.Context) Result {
	s.mu.Lock()
	before := s.started
	s.mu.Unlock()
	return s.await(ctx, func() bool { return s.started <= before || s.started <= s.expired })
}

// Expire says the store changed in a way the cached judgement misses (a
// person kept an instance, or lifted a keep): later callers get a scan
// started after this call, not the cached one or one already running, so
// that a list right after a keep shows it.
func (s *Scanner) Expire() {
	if e, ok := s.store.(interface{ Expire() }); ok {
		// A store kept by announcements reads in full next: the change is
		// committed, its announcement may not have arrived yet.
		e.Expire()
	}
	s.Outdate()
}

// Outdate says the engine changed (a view's event): later callers get a
// scan started after this call, which reads the store as it would anyway.
func (s *Scanner) Outdate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired = s.started
}

// await starts a scan if none runs and need() says so, then waits for the
// running scan, if any, or for ctx. A scan that started before an Expire is
// waited for and then followed by one that did not.
func (s *Scanner) await(ctx context.Context, need func() bool) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.inflight == nil && need() {
			s.startLocked()
		}
		done, number := s.inflight, s.started
		if done == nil {
			return s.resultLocked()
		}
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		s.mu.Lock()
		if ctx.Err() != nil || number > s.expired {
			return s.resultLocked()
		}
	}
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
	s.started++
	s.scans.Add(1)
	go func() {
		defer s.scans.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		start := time.Now()
		snap, r := s.scan(ctx)
		r.Duration = time.Since(start)
		s.mu.Lock()
		if r.Success {
			s.good = snap
			s.changesAt = snap.ChangesAt()
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
