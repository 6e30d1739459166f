package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// changesChannel is where the store's triggers announce changes
// (migration 0008).
const changesChannel = "stale_exporter_changes"

// FeedConfig tunes a Feed.
type FeedConfig struct {
	// Resync is how often the inventory is read again in full, whatever was
	// announced.
	Resync time.Duration
	// Heartbeat is how often the engine's heartbeat is written and the
	// engines read again (their heartbeats are not announced).
	Heartbeat time.Duration
	// Ping is how often a quiet listening connection is asked whether it
	// still answers: a frozen server keeps a connection open.
	Ping time.Duration
	// Timeout bounds the ping.
	Timeout time.Duration
	// Changed is called after a change was announced.
	Changed func()
}

// Feed is the inventory an exporter judges, kept in memory: read in full
// once, then by change, as the store's triggers announce them on a
// connection that LISTENs: the rows of the instances announced are read
// again, and anything else announced (a project, a stage, the settings, an
// engine registered or removed) makes the next read a full one, as does
// the resync interval. While the listening connection is down, every read
// is a full one, as without a feed, so that a store that does not answer
// fails the scan (store_up 0).
type Feed struct {
	store  *Store
	cfg    FeedConfig
	logger *slog.Logger

	mu  sync.Mutex
	inv *Inventory
	// host is the engine the inventory was read for.
	host string
	// live: the listening connection is up and has been since inv was
	// read in full.
	live bool
	// full asks for a full read; ids are the instances to read again.
	full                 bool
	ids                  map[string]bool
	fullAt, heartbeatAt  time.Time
	fullReads, rowReads  atomic.Uint64
	announced, listenups atomic.Uint64
}

// NewFeed returns the feed of s; Run keeps it.
func NewFeed(s *Store, cfg FeedConfig, logger *slog.Logger) *Feed {
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	return &Feed{store: s, cfg: cfg, logger: logger, ids: map[string]bool{}, full: true}
}

// ReadInventory answers the inventory: from memory when nothing was
// announced, reading again the instances announced, or in full.
func (f *Feed) ReadInventory(ctx context.Context, dockerHost string) (Inventory, error) {
	now := time.Now()
	f.mu.Lock()
	full := !f.live || f.full || f.inv == nil || f.host != dockerHost || now.Sub(f.fullAt) >= f.cfg.Resync
	ids := make([]string, 0, len(f.ids))
	for id := range f.ids {
		ids = append(ids, id)
	}
	// Taken before the read: what is announced while it runs is read by
	// the next.
	f.full, f.ids = false, map[string]bool{}
	heartbeat := now.Sub(f.heartbeatAt) >= f.cfg.Heartbeat
	f.mu.Unlock()

	if full {
		inv, err := f.store.ReadInventory(ctx, dockerHost)
		f.mu.Lock()
		defer f.mu.Unlock()
		if err != nil {
			f.full = true
			return Inventory{}, err
		}
		f.fullReads.Add(1)
		f.inv, f.host, f.fullAt, f.heartbeatAt = &inv, dockerHost, now, now
		return inv, nil
	}
	var rows []stale.Instance
	var engines *Inventory
	if len(ids) > 0 || heartbeat {
		var err error
		if rows, engines, err = f.store.readChanged(ctx, dockerHost, ids, heartbeat); err != nil {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.full = true
			return Inventory{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rowReads.Add(uint64(len(ids)))
	f.inv.merge(ids, rows)
	if engines != nil {
		f.inv.Engines, f.inv.OtherEngines, f.heartbeatAt = engines.Engines, engines.OtherEngines, now
	}
	// Shared with the caller, not copied (a scan of thousands reads it
	// every time): the feed never changes a slice or map it handed out,
	// merge and the engines' read make new ones.
	return *f.inv, nil
}

// Expire makes the next read a full one: the caller changed the store in a
// way it must see at once, before the announcement arrives.
func (f *Feed) Expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.full = true
}

// announce records one announcement.
func (f *Feed) announce(payload string) {
	table, id, _ := strings.Cut(payload, ":")
	f.mu.Lock()
	switch {
	case (table == "instances" || table == "stale_exporter_keeps") && id != "":
		f.ids[id] = true
	default:
		f.full = true
	}
	f.mu.Unlock()
	f.announced.Add(1)
	f.cfg.Changed()
}

// Run listens until ctx ends, connecting again (1s, doubling to 30s) after
// the connection breaks; each (re)connection makes the next read a full one,
// as announcements may have been missed.
func (f *Feed) Run(ctx context.Context) {
	backoff := time.Second
	for {
		wasUp, err := f.listen(ctx)
		f.setLive(false)
		// What was read from it may be old news now: the next scan reads
		// the source itself.
		f.cfg.Changed()
		if ctx.Err() != nil {
			return
		}
		if wasUp {
			backoff = time.Second
		}
		f.logger.Warn("store change feed down: scans read the store in full until it is back", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (f *Feed) listen(ctx context.Context) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, f.store.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("connect to listen: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	f.mu.Lock()
	f.live, f.full = true, true
	f.mu.Unlock()
	f.listenups.Add(1)
	f.cfg.Changed()
	for {
		wctx, cancel := context.WithTimeout(ctx, f.cfg.Ping)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			f.announce(n.Payload)
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping the listening connection: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for announcements: %w", err)
		}
	}
}

func (f *Feed) setLive(live bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = live
}

// Live reports whether the feed listens now.
func (f *Feed) Live() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live
}

// Fed is a store whose inventory its feed answers: what scans read when
// announcements keep it.
type Fed struct {
	*Store
	Feed *Feed
}

// ReadInventory answers the feed's inventory.
func (s Fed) ReadInventory(ctx context.Context, dockerHost string) (Inventory, error) {
	return s.Feed.ReadInventory(ctx, dockerHost)
}

// Expire makes the feed's next read a full one.
func (s Fed) Expire() { s.Feed.Expire() }

// readChanged reads the instances of ids that dockerHost's exporter may
// judge, and, with heartbeat, writes its heartbeat and reads the engines,
// in one round trip.
func (s *Store) readChanged(ctx context.Context, dockerHost string, ids []string, heartbeat bool) ([]stale.Instance, *Inventory, error) {
	batch := &pgx.Batch{}
	var rows []stale.Instance
	var engines *Inventory
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		// An id the platform's column cannot hold names no row.
		if key, ok := s.InstanceKey(id); ok {
			keys = append(keys, key)
		}
	}
	if len(keys) > 0 {
		batch.Queue("SELECT "+instanceColumns+" WHERE i.id = ANY($1::text[]::"+s.shape.IDTypes["instances"]+"[]) AND (i.docker_host = $2 OR i.docker_host IS NULL)", keys, dockerHost).
			Query(func(r pgx.Rows) error {
				for r.Next() {
					in, err := scanInstance(r)
					if err != nil {
						return err
					}
					rows = append(rows, in)
				}
				return r.Err()
			})
	}
	if heartbeat {
		engines = &Inventory{}
		batch.Queue(heartbeatSQL, dockerHost).Exec(func(pgconn.CommandTag) error { return nil })
		batch.Queue(enginesSQL).Query(func(r pgx.Rows) error { return scanEngines(r, dockerHost, engines) })
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, nil, fmt.Errorf("read changed instances: %w", err)
	}
	return rows, engines, nil
}

// merge replaces the instances of ids by rows, in a new slice: an id
// without a row is gone (deleted, or now another engine's).
func (inv *Inventory) merge(ids []string, rows []stale.Instance) {
	if len(ids) == 0 {
		return
	}
	changed := make(map[string]bool, len(ids))
	for _, id := range ids {
		changed[id] = true
	}
	kept := inv.Instances[:0:0]
	for _, in := range inv.Instances {
		if !changed[in.ID] {
			kept = append(kept, in)
		}
	}
	inv.Instances = append(kept, rows...)
	slices.SortFunc(inv.Instances, func(a, b stale.Instance) int { return strings.Compare(a.ID, b.ID) })
}

var (
	feedLiveDesc = prometheus.NewDesc("stale_exporter_store_changes_live",
		"1 while the store's announcements keep the inventory; 0 while every scan reads it in full.", nil, nil)
	feedFullDesc = prometheus.NewDesc("stale_exporter_store_full_reads_total",
		"Full reads of the inventory.", nil, nil)
	feedRowsDesc = prometheus.NewDesc("stale_exporter_store_changed_rows_read_total",
		"Instance rows read again because their change was announced.", nil, nil)
	feedAnnouncedDesc = prometheus.NewDesc("stale_exporter_store_announcements_total",
		"Changes the store announced.", nil, nil)
)

// Describe and Collect export the feed's own health.
func (f *Feed) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{feedLiveDesc, feedFullDesc, feedRowsDesc, feedAnnouncedDesc} {
		ch <- d
	}
}

func (f *Feed) Collect(ch chan<- prometheus.Metric) {
	live := 0.0
	if f.Live() {
		live = 1
	}
	ch <- prometheus.MustNewConstMetric(feedLiveDesc, prometheus.GaugeValue, live)
	ch <- prometheus.MustNewConstMetric(feedFullDesc, prometheus.CounterValue, float64(f.fullReads.Load()))
	ch <- prometheus.MustNewConstMetric(feedRowsDesc, prometheus.CounterValue, float64(f.rowReads.Load()))
	ch <- prometheus.MustNewConstMetric(feedAnnouncedDesc, prometheus.CounterValue, float64(f.announced.Load()))
}
