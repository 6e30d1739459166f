package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// TestMain doubles as one replica of TestMigrateConcurrently when started
// with STALE_EXPORTER_MIGRATE_CHILD set to a DSN.
func TestMain(m *testing.M) {
	if dsn := os.Getenv("STALE_EXPORTER_MIGRATE_CHILD"); dsn != "" {
		st, err := store.Open(context.Background(), dsn)
		if err == nil {
			err = st.Migrate(context.Background())
			st.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestMigrateTwiceIsANoOp(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	id := db.AddInstance(t, storetest.Instance{ContainerID: "abc"})
	if err := db.Store.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if n := db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", id); n != 1 {
		t.Fatalf("instance rows after second migrate = %d, want 1", n)
	}
	if n := db.Count(t, "SELECT count(*) FROM settings"); n != 1 {
		t.Fatalf("settings rows = %d, want 1", n)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v %v", files, err)
	}
	if n := db.Count(t, "SELECT count(*) FROM stale_exporter_migrations"); n != len(files) {
		t.Fatalf("recorded migrations = %d, want one per file (%d)", n, len(files))
	}
}

// TestMigrateConcurrently starts the migration from several processes at
// once, as replicas starting together would.
func TestMigrateConcurrently(t *testing.T) {
	dsn := testenv.Database(t)
	const processes = 4
	var wg sync.WaitGroup
	errs := make([]error, processes)
	outs := make([][]byte, processes)
	for i := range processes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "STALE_EXPORTER_MIGRATE_CHILD="+dsn)
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i := range processes {
		if errs[i] != nil {
			t.Fatalf("process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	days, err := st.ThresholdDays(context.Background())
	if err != nil || days != 7 {
		t.Fatalf("threshold days = %d, %v; want 7", days, err)
	}
}

func TestTriggerSetsLastAliveWhenInstanceBecomesRunning(t *testing.T) {
	db := storetest.New(t)
	old := time.Now().Add(-30 * 24 * time.Hour)

	inserted := db.AddInstance(t, storetest.Instance{Status: stale.StatusRunning, LastAliveAt: old})
	if got := db.LastAliveAt(t, inserted); time.Since(got) > time.Minute {
		t.Fatalf("inserted running: last_alive_at = %v, want about now", got)
	}

	stopped := db.AddInstance(t, storetest.Instance{Status: stale.StatusStopped, LastAliveAt: old})
	if got := db.LastAliveAt(t, stopped); !got.Equal(old.Truncate(time.Microsecond)) {
		t.Fatalf("inserted stopped: last_alive_at = %v, want %v", got, old)
	}
	db.Exec(t, "UPDATE instances SET image_tag = 'x' WHERE id = $1", stopped)
	if got := db.LastAliveAt(t, stopped); !got.Equal(old.Truncate(time.Microsecond)) {
		t.Fatalf("unrelated update: last_alive_at = %v, want unchanged %v", got, old)
	}
	db.Exec(t, "UPDATE instances SET status = 'running' WHERE id = $1", stopped)
	if got := db.LastAliveAt(t, stopped); time.Since(got) > time.Minute {
		t.Fatalf("updated to running: last_alive_at = %v, want about now", got)
	}
}

func TestMarkAliveNeverMovesBack(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	a := db.AddInstance(t, storetest.Instance{LastAliveAt: now.Add(-time.Hour)})
	b := db.AddInstance(t, storetest.Instance{LastAliveAt: now.Add(time.Hour)})
	c := db.AddInstance(t, storetest.Instance{})
	d := db.AddInstance(t, storetest.Instance{LastAliveAt: now.Add(-time.Hour)})
	if err := db.Store.MarkAlive(ctx, map[string]time.Time{a: now, b: now, c: now, d: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]time.Time{a: now, b: now.Add(time.Hour), c: now, d: now.Add(-time.Minute)} {
		if got := db.LastAliveAt(t, id); !got.Equal(want) {
			t.Errorf("instance %s: last_alive_at = %v, want %v", id, got, want)
		}
	}
}

func TestReadInventoryJoinsNames(t *testing.T) {
	db := storetest.New(t)
	id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: "preview", ImageTag: "pr-17", ContainerID: "c1"})
	db.Exec(t, "UPDATE settings SET stale_threshold_days = 3")
	inv, err := db.Store.ReadInventory(context.Background(), testenv.EngineName)
	if err != nil {
		t.Fatal(err)
	}
	if inv.ThresholdDays != 3 || len(inv.Instances) != 1 {
		t.Fatalf("inventory = %+v", inv)
	}
	in := inv.Instances[0]
	if in.ID != id || in.ProjectName != "shop" || in.StageName != "preview" || in.ImageTag != "pr-17" ||
		in.ContainerID != "c1" || !in.LastAliveAt.IsZero() {
		t.Fatalf("instance = %+v", in)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	_, err := store.Open(context.Background(), "postgres://user:s3cret@127.0.0.1:1/db?connect_timeout=2")
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// Engines register by their heartbeat; a job of an unowned instance is
// claimed in auto mode only while no other engine is registered, and again
// once an operator removed the other's registration (audited).
func TestEngineRegistryDecidesUnownedJobs(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	id := db.AddInstance(t, storetest.Instance{ContainerID: "abc"})
	if others, err := db.Store.Register(ctx, "host-a"); err != nil || others != 0 {
		t.Fatalf("register host-a: %d %v", others, err)
	}
	if _, _, err := db.Store.EnqueueJob(ctx, store.JobRequest{InstanceID: id, ContainerID: "abc", Trigger: "single", RequestedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	if others, err := db.Store.Register(ctx, "host-b"); err != nil || others != 1 {
		t.Fatalf("register host-b: %d %v", others, err)
	}
	for mode, want := range map[stale.UnownedMode]bool{stale.UnownedAuto: false, stale.UnownedOff: false} {
		if _, ok, err := db.Store.LeaseJob(ctx, time.Minute, "host-a", mode); err != nil || ok != want {
			t.Errorf("claim in mode %s with another engine registered: %v %v, want %v", mode, ok, err, want)
		}
	}
	if err := db.Store.ForgetEngine(ctx, "host-c", "admin"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("forget an engine never registered: %v", err)
	}
	if err := db.Store.ForgetEngine(ctx, "host-b", "admin"); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "SELECT count(*) FROM event_log WHERE message LIKE '%host-b% removed by admin'"); n != 1 {
		t.Errorf("%d events for the removed registration, want 1", n)
	}
	if _, ok, err := db.Store.LeaseJob(ctx, time.Minute, "host-a", stale.UnownedAuto); err != nil || !ok {
		t.Fatalf("claim in auto mode once alone again: %v %v", ok, err)
	}
	engines, err := db.Store.Engines(ctx)
	if err != nil || len(engines) != 1 || engines[0].Name != "host-a" {
		t.Fatalf("engines: %+v %v", engines, err)
	}
}

// An alert occurrence is recorded once; its repeats renew last_seen_at, so
// that retention forgets it only once Alertmanager stopped sending it.
func TestAlertRepeatsRenewTheOccurrence(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	occ := store.AlertOccurrence{Fingerprint: "f", StartsAt: time.Now().Truncate(time.Second), InstanceID: "any-id"}
	event := store.Event{Severity: store.SeverityWarning, Message: "stale"}
	if recorded, _, err := db.Store.RecordAlert(ctx, occ, event, nil); err != nil || !recorded {
		t.Fatalf("first: %v %v", recorded, err)
	}
	db.Exec(t, "UPDATE alert_occurrences SET last_seen_at = now() - interval '100 days'")
	if recorded, _, err := db.Store.RecordAlert(ctx, occ, event, nil); err != nil || recorded {
		t.Fatalf("repeat: %v %v, want not recorded", recorded, err)
	}
	if n := db.Count(t, "SELECT count(*) FROM alert_occurrences WHERE last_seen_at > now() - interval '1 minute'"); n != 1 {
		t.Fatal("a repeat did not renew the occurrence")
	}
	if _, err := db.Store.Prune(ctx, time.Now().Add(-90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "SELECT count(*) FROM alert_occurrences"); n != 1 {
		t.Fatal("retention forgot an occurrence Alertmanager still sends")
	}
}
