package store_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// startFeed keeps a feed of db until the test ends.
func startFeed(t *testing.T, db *storetest.DB, cfg store.FeedConfig) *store.Feed {
	t.Helper()
	if cfg.Resync == 0 {
		cfg.Resync = time.Hour
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Hour
	}
	if cfg.Ping == 0 {
		cfg.Ping = time.Hour
	}
	cfg.Timeout = 5 * time.Second
	feed := store.NewFeed(db.Store, cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); feed.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !feed.Live() {
		if time.Now().After(deadline) {
			t.Fatal("the feed did not listen within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return feed
}

// reads are the feed's full reads and changed rows read so far.
func reads(t *testing.T, f *store.Feed) (full, rows float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(f)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		switch fam.GetName() {
		case "stale_exporter_store_full_reads_total":
			full = fam.GetMetric()[0].GetCounter().GetValue()
		case "stale_exporter_store_changed_rows_read_total":
			rows = fam.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return full, rows
}

// byID is the inventory's instance with that id.
func byID(inv store.Inventory, id string) (stale.Instance, bool) {
	i := slices.IndexFunc(inv.Instances, func(in stale.Instance) bool { return in.ID == id })
	if i < 0 {
		return stale.Instance{}, false
	}
	return inv.Instances[i], true
}

// readUntil reads the inventory until cond holds, and says how long it took.
func readUntil(t *testing.T, f *store.Feed, what string, cond func(store.Inventory) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		inv, err := f.ReadInventory(context.Background(), testenv.EngineName)
		if err != nil {
			t.Fatal(err)
		}
		if cond(inv) {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not seen within 5s", what)
	return 0
}

// The inventory is read in full once, then only what the platform changed:
// a new instance, a new container id, status removing, a deleted row, a
// keep; this service's own last_alive_at writes announce nothing, and a
// steady read reads nothing.
func TestFeedReadsWhatChanged(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	first := db.AddInstance(t, storetest.Instance{ContainerID: "c1"})
	feed := startFeed(t, db, store.FeedConfig{})
	inv, err := feed.ReadInventory(ctx, testenv.EngineName)
	if err != nil || len(inv.Instances) != 1 {
		t.Fatalf("first read: %v %+v", err, inv)
	}
	// The first read registered the engine, which is announced: the next
	// read is a full one too.
	readUntil(t, feed, "the engine's registration", func(inv store.Inventory) bool { return !inv.Engines[testenv.EngineName].IsZero() })
	time.Sleep(200 * time.Millisecond)
	if _, err := feed.ReadInventory(ctx, testenv.EngineName); err != nil {
		t.Fatal(err)
	}
	full, rows := reads(t, feed)
	for range 10 {
		if _, err := feed.ReadInventory(ctx, testenv.EngineName); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Store.MarkAlive(ctx, map[string]time.Time{first: time.Now()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := feed.ReadInventory(ctx, testenv.EngineName); err != nil {
		t.Fatal(err)
	}
	if f, r := reads(t, feed); f != full || r != rows {
		t.Fatalf("steady reads and a last_alive_at write read %v full and %v rows; want none", f-full, r-rows)
	}

	var second string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO instances (stage_id, project_id, container_id, status)
		SELECT stage_id, project_id, 'c2', 'running' FROM instances LIMIT 1 RETURNING id::text`).Scan(&second); err != nil {
		t.Fatal(err)
	}
	took := readUntil(t, feed, "a new instance", func(inv store.Inventory) bool { _, ok := byID(inv, second); return ok })
	t.Logf("a new instance read %s after its insert", took.Round(time.Millisecond))
	db.Exec(t, "UPDATE instances SET container_id = 'c3' WHERE id = $1", first)
	readUntil(t, feed, "a new container id", func(inv store.Inventory) bool { in, _ := byID(inv, first); return in.ContainerID == "c3" })
	db.Exec(t, "UPDATE instances SET status = 'removing' WHERE id = $1", first)
	readUntil(t, feed, "status removing", func(inv store.Inventory) bool { in, _ := byID(inv, first); return in.Status == "removing" })
	if err := db.Store.KeepInstance(ctx, second, stale.Keep{By: "ana", Reason: "demo"}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, feed, "a keep", func(inv store.Inventory) bool { in, _ := byID(inv, second); return in.Keep != nil })
	db.Exec(t, "DELETE FROM instances WHERE id = $1", first)
	readUntil(t, feed, "a deleted row", func(inv store.Inventory) bool { _, ok := byID(inv, first); return !ok })
	if f, r := reads(t, feed); f != full || r < rows+4 {
		t.Fatalf("the changes were read with %v full reads and %v rows; want 0 full and a row each", f-full, r-rows)
	}
	// Another engine's row is not this engine's to judge: it leaves.
	db.Exec(t, "UPDATE instances SET docker_host = 'other-host' WHERE id = $1", second)
	readUntil(t, feed, "a row another engine owns", func(inv store.Inventory) bool { _, ok := byID(inv, second); return !ok })

	// The settings change: a full read.
	db.Exec(t, "UPDATE settings SET stale_threshold_days = 3")
	readUntil(t, feed, "the threshold", func(inv store.Inventory) bool { return inv.ThresholdDays == 3 })
	if f, _ := reads(t, feed); f != full+1 {
		t.Fatalf("a settings change made %v full reads, want 1", f-full)
	}
}

// The listening connection cut, every read is a full one until it listens
// again (and then once more: announcements may have been missed).
func TestFeedAcrossACutConnection(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	db.AddInstance(t, storetest.Instance{})
	feed := startFeed(t, db, store.FeedConfig{})
	if _, err := feed.ReadInventory(ctx, testenv.EngineName); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN stale_exporter_changes'"); n != 1 {
		t.Fatalf("%d listening connections, want 1", n)
	}
	db.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN stale_exporter_changes'")
	deadline := time.Now().Add(5 * time.Second)
	for feed.Live() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	full, _ := reads(t, feed)
	var missed string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO instances (stage_id, project_id, status)
		SELECT stage_id, project_id, 'stopped' FROM instances LIMIT 1 RETURNING id::text`).Scan(&missed); err != nil {
		t.Fatal(err)
	}
	inv, err := feed.ReadInventory(ctx, testenv.EngineName)
	if _, ok := byID(inv, missed); err != nil || !ok {
		t.Fatalf("while the feed is down, a read missed a new row: %v", err)
	}
	if f, _ := reads(t, feed); f != full+1 {
		t.Fatalf("a read while the feed is down: %v full reads, want 1", f-full)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !feed.Live() {
		if time.Now().After(deadline) {
			t.Fatal("the feed did not listen again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A quiet feed pings its connection and keeps listening: the pings do not
// cost it an announcement.
func TestFeedPingsAQuietConnection(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	db.AddInstance(t, storetest.Instance{})
	feed := startFeed(t, db, store.FeedConfig{Ping: 50 * time.Millisecond})
	if _, err := feed.ReadInventory(ctx, testenv.EngineName); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // ten pings
	if !feed.Live() {
		t.Fatal("the feed went down while pinging a quiet connection")
	}
	// The registration's announcement is read in full by now.
	if _, err := feed.ReadInventory(ctx, testenv.EngineName); err != nil {
		t.Fatal(err)
	}
	full, _ := reads(t, feed)
	var added string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO instances (stage_id, project_id, status)
		SELECT stage_id, project_id, 'stopped' FROM instances LIMIT 1 RETURNING id::text`).Scan(&added); err != nil {
		t.Fatal(err)
	}
	readUntil(t, feed, "a row added after the pings", func(inv store.Inventory) bool { _, ok := byID(inv, added); return ok })
	if f, _ := reads(t, feed); f != full || !feed.Live() {
		t.Fatalf("after the pings, a new row took %v full reads (live %v); want it read by its announcement", f-full, feed.Live())
	}
}
