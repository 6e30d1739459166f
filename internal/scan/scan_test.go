package scan_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// mem is the store in memory with a threshold of days and instances.
func mem(days int64, instances ...stale.Instance) *storetest.Mem {
	st := storetest.NewMem()
	st.Days = days
	for _, in := range instances {
		st.Put(in)
	}
	return st
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func hexID(n int) string { return fmt.Sprintf("%064x", n) }

func unitScanner(engine *dockertest.Engine, st *storetest.Mem, clock *fakeClock, adopt bool) *scan.Scanner {
	return scan.NewScanner(engine, st, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: time.Hour, Now: clock.Now}, CacheTTL: time.Second, MaxSnapshotAge: 5 * time.Minute, Adopt: adopt}, slog.New(slog.DiscardHandler))
}

func TestScanJudgesEveryInstance(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	engine := &dockertest.Engine{}
	managed := func(id string) map[string]string { return map[string]string{stale.LabelInstanceID: id} }
	engine.Add(dockertest.Container{ID: hexID(1), Name: "web", State: "running", Labels: managed("i-running"), Created: long})
	engine.Add(dockertest.Container{ID: hexID(2), Name: "old", State: "exited", Labels: managed("i-exited"), Created: long, FinishedAt: long})
	engine.Add(dockertest.Container{ID: hexID(3), Name: "fresh", State: "exited", Labels: managed("i-fresh"), Created: long, FinishedAt: t0.Add(-time.Minute)})
	engine.Add(dockertest.Container{ID: hexID(4), Name: "by-name", State: "running", Created: long}) // no platform label
	engine.Add(dockertest.Container{ID: hexID(5), Name: "short", State: "created", Labels: managed("i-short"), Created: long})
	st := mem(7, []stale.Instance{
		{ID: "i-running", ContainerID: hexID(1), CreatedAt: long},
		{ID: "i-exited", ContainerID: hexID(2), CreatedAt: long, LastAliveAt: long},
		{ID: "i-fresh", ContainerID: hexID(3), CreatedAt: long},
		{ID: "i-by-name", ContainerID: "by-name", CreatedAt: long},
		{ID: "i-short", ContainerID: hexID(5)[:12], CreatedAt: long},
		{ID: "i-gone", ContainerID: hexID(9), CreatedAt: long},
		{ID: "i-never", CreatedAt: long},
	}...)
	clock := &fakeClock{now: t0}
	scanner := unitScanner(engine, st, clock, false)
	r := scanner.Rescan(context.Background())
	if !r.Success || r.Seq != 1 {
		t.Fatalf("scan: %+v", r)
	}
	want := map[string]struct {
		stale bool
		state string
	}{
		"i-running": {false, "running"}, "i-exited": {true, "exited"}, "i-fresh": {false, "exited"},
		"i-by-name": {false, "running"}, "i-short": {true, "created"}, "i-gone": {true, stale.StateMissing},
		"i-never": {false, stale.StateMissing}, // no container: nothing to remove, never stale
	}
	for _, o := range r.Snapshot.Observations {
		w := want[o.Instance.ID]
		if o.Verdict.Stale != w.stale || o.Container.DockerState() != w.state {
			t.Errorf("%s: stale=%v state=%s, want %v %s", o.Instance.ID, o.Verdict.Stale, o.Container.DockerState(), w.stale, w.state)
		}
	}
	if len(st.Alive) != 2 || !st.Alive["i-running"].Equal(t0) || !st.Alive["i-by-name"].Equal(t0) {
		t.Errorf("marked alive: %v, want the two running instances at the scan's time", st.Alive)
	}
	// One list; inspects: two stopped listed containers, and two unlisted rows.
	if engine.Lists != 1 || engine.Inspects != 5 {
		t.Errorf("first scan: %d lists, %d inspects; want 1 and 5", engine.Lists, engine.Inspects)
	}
	// Within the cache TTL the scan is reused; after it, only the row named by
	// name is looked up again (FinishedAt and the 404 of a full id are cached).
	scanner.Result(context.Background())
	clock.Add(2 * time.Second)
	if r := scanner.Result(context.Background()); r.Seq != 2 {
		t.Fatalf("after the cache TTL: scan %d, want 2", r.Seq)
	}
	if engine.Lists != 2 || engine.Inspects != 6 {
		t.Errorf("second scan: %d lists, %d inspects in all; want 2 and 6", engine.Lists, engine.Inspects)
	}
}

func TestUnlistedLookupsAreBounded(t *testing.T) {
	engine := &dockertest.Engine{}
	st := mem(7)
	for i := range 150 {
		st.Put(stale.Instance{ID: fmt.Sprint(i), ContainerID: fmt.Sprintf("name-%d", i), CreatedAt: t0.Add(-48 * time.Hour)})
	}
	r := unitScanner(engine, st, &fakeClock{now: t0}, false).Rescan(context.Background())
	unknown := 0
	for _, o := range r.Snapshot.Observations {
		if o.Container.Unknown {
			unknown++
			if o.Verdict.Stale {
				t.Fatalf("an instance not looked up was judged stale")
			}
		}
	}
	if engine.Inspects != 100 || unknown != 50 || r.Snapshot.StaleCount() != 100 {
		t.Fatalf("inspects %d, unknown %d, stale %d; want 100, 50, 100", engine.Inspects, unknown, r.Snapshot.StaleCount())
	}
}

// While scans fail the last good snapshot is served, for MaxSnapshotAge.
func TestSnapshotServedForMaxAgeWhileScansFail(t *testing.T) {
	engine := &dockertest.Engine{}
	st := mem(7, stale.Instance{ID: "a", CreatedAt: t0.Add(-48 * time.Hour)})
	clock := &fakeClock{now: t0}
	scanner := unitScanner(engine, st, clock, false)
	if r := scanner.Rescan(context.Background()); !r.Success {
		t.Fatal(r.Err)
	}
	engine.Down = true
	clock.Add(4 * time.Minute)
	r := scanner.Rescan(context.Background())
	if r.Success || r.DockerUp || !r.StoreUp || r.Snapshot == nil || !r.LastSuccess.Equal(t0) {
		t.Fatalf("4m into an outage: %+v, want the last good snapshot", r)
	}
	clock.Add(2 * time.Minute)
	if r := scanner.Rescan(context.Background()); r.Snapshot != nil || !r.LastSuccess.Equal(t0) {
		t.Fatalf("6m into an outage: snapshot still served (max age 5m)")
	}
	st.Err, engine.Down = errors.New("connection refused"), false
	if r := scanner.Rescan(context.Background()); r.StoreUp || !r.DockerUp || r.Success {
		t.Fatalf("store down: %+v", r)
	}
}

func TestAdoptionAndImageTags(t *testing.T) {
	engine := &dockertest.Engine{}
	created := t0.Add(-72 * time.Hour)
	for i, c := range []struct{ image, tagLabel string }{
		{"registry:5000/shop/web:pr-17", ""},
		{"registry:5000/shop/web", ""},
		{"shop/web@sha256:0123", ""},
		{"shop/web:v2@sha256:0123", ""},
		{"web", "from-label"},
	} {
		labels := map[string]string{stale.LabelInstanceID: fmt.Sprintf("6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5%d", i),
			stale.LabelProject: "shop", stale.LabelStage: "preview"}
		if c.tagLabel != "" {
			labels[stale.LabelImageTag] = c.tagLabel
		}
		engine.Add(dockertest.Container{ID: hexID(i + 1), Image: c.image, State: "exited", Labels: labels, Created: created})
	}
	engine.Add(dockertest.Container{ID: hexID(9), State: "exited", Labels: map[string]string{stale.LabelInstanceID: "not an id",
		stale.LabelProject: "shop", stale.LabelStage: "preview"}})
	st := mem(7)
	r := unitScanner(engine, st, &fakeClock{now: t0}, true).Rescan(context.Background())
	if !r.Success || len(st.Adoptions) != 5 {
		t.Fatalf("adopted %d, want 5 (not the one whose id holds spaces): %v", len(st.Adoptions), r.Err)
	}
	for i, want := range []string{"pr-17", "latest", "latest", "v2", "from-label"} {
		a := st.Adoptions[i]
		if a.ImageTag != want || !a.CreatedAt.Equal(created.Truncate(time.Second)) || a.Status != stale.StatusStopped {
			t.Errorf("adoption %d: tag %q created %s status %s, want %q, the container's creation, stopped", i, a.ImageTag, a.CreatedAt, a.Status, want)
		}
	}
}

// Each exporter judges only what its engine owns; an unowned instance is
// claimed by the engine that lists its container with its instance label.
func TestOwnershipByObservation(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	engine := &dockertest.Engine{}
	managed := func(id string) map[string]string { return map[string]string{stale.LabelInstanceID: id} }
	engine.Add(dockertest.Container{ID: hexID(1), State: "exited", Labels: managed("mine"), Created: long})
	engine.Add(dockertest.Container{ID: hexID(2), State: "exited", Labels: managed("unowned-here"), Created: long})
	// The same id string another host's row names, labelled for another instance.
	engine.Add(dockertest.Container{ID: hexID(3), State: "exited", Labels: managed("someone-else"), Created: long})
	instances := []stale.Instance{
		{ID: "mine", ContainerID: hexID(1), CreatedAt: long, DockerHost: "a"},
		{ID: "theirs", ContainerID: hexID(1), CreatedAt: long, DockerHost: "b"},
		{ID: "unowned-here", ContainerID: hexID(2), CreatedAt: long},
		{ID: "unowned-elsewhere", ContainerID: hexID(7), CreatedAt: long},
		{ID: "same-id-string", ContainerID: hexID(3), CreatedAt: long},
	}
	for _, claimUnowned := range []bool{false, true} {
		st := mem(1, instances...)
		mode := stale.UnownedOff
		if claimUnowned {
			mode = stale.UnownedOn
		}
		scanner := scan.NewScanner(engine, st, scan.Config{Config: stale.Config{Host: "a", Unowned: mode, Now: (&fakeClock{now: t0}).Now}, MaxSnapshotAge: time.Minute}, slog.New(slog.DiscardHandler))
		r := scanner.Rescan(context.Background())
		got := map[string]stale.Observation{}
		for _, o := range r.Snapshot.Observations {
			got[o.Instance.ID] = o
		}
		if _, ok := got["theirs"]; ok {
			t.Fatalf("claim-unowned=%v: another host's instance was read", claimUnowned)
		}
		for id, want := range map[string]struct {
			stale bool
			host  string
		}{
			"mine": {true, "a"}, "unowned-here": {true, "a"},
			// A container id string alone is not the instance's: labelled
			// for another instance, it is never judged stale for this one.
			"unowned-elsewhere": {claimUnowned, ""}, "same-id-string": {false, ""},
		} {
			if o := got[id]; o.Verdict.Stale != want.stale || o.Instance.DockerHost != want.host {
				t.Errorf("claim-unowned=%v, %s: stale=%v host=%q, want %v %q", claimUnowned, id, o.Verdict.Stale, o.Instance.DockerHost, want.stale, want.host)
			}
		}
		owners := map[string]string{}
		for _, in := range st.Instances {
			owners[in.ID] = in.DockerHost
		}
		if owners["unowned-here"] != "a" || owners["same-id-string"] != "" || owners["unowned-elsewhere"] != "" || owners["theirs"] != "b" {
			t.Errorf("claim-unowned=%v: owners after the scan %v", claimUnowned, owners)
		}
	}
}

// gatedStore holds a scan after it read the store, until the test opens
// the gate: a change made meanwhile is one the running scan missed.
type gatedStore struct {
	*storetest.Mem
	read chan struct{} // a read happened
	gate chan struct{} // closed to let reads return
}

func (g gatedStore) ReadInventory(ctx context.Context, host string) (store.Inventory, error) {
	inv, err := g.Mem.ReadInventory(ctx, host)
	g.read <- struct{}{}
	<-g.gate
	return inv, err
}

// A keep made after a scan read the store, cached or still running, is in
// the next result: Expire makes callers wait for a scan that started later,
// those already waiting too.
func TestExpireOutdatesCachedAndRunningScans(t *testing.T) {
	created := t0.Add(-48 * time.Hour)
	engine := &dockertest.Engine{}
	engine.Add(dockertest.Container{ID: hexID(1), State: "exited", Labels: map[string]string{stale.LabelInstanceID: "a"}, Created: created, FinishedAt: created})
	in := stale.Instance{ID: "a", ContainerID: hexID(1), CreatedAt: created}
	st := gatedStore{Mem: mem(7, in), read: make(chan struct{}, 8), gate: make(chan struct{})}
	clock := &fakeClock{now: t0}
	scanner := scan.NewScanner(engine, st, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn,
		Threshold: time.Hour, Now: clock.Now}, CacheTTL: time.Minute, MaxSnapshotAge: time.Hour}, slog.New(slog.DiscardHandler))
	kept := func(r scan.Result) bool {
		return r.Snapshot != nil && len(r.Snapshot.Observations) == 1 && r.Snapshot.Observations[0].Verdict.Keep != nil
	}

	// A scan reads the store; the keep lands while it runs.
	first := make(chan scan.Result)
	go func() { first <- scanner.Rescan(context.Background()) }()
	<-st.read
	in.Keep = &stale.Keep{By: "test-operator", Reason: "a demo"}
	st.Put(in)
	scanner.Expire()
	second := make(chan scan.Result)
	go func() { second <- scanner.Result(context.Background()) }()
	close(st.gate)
	// Both callers, the one waiting when Expire came and the one after, get
	// the scan that started after it.
	for name, ch := range map[string]chan scan.Result{"waiting": first, "after": second} {
		if r := <-ch; !kept(r) || r.Seq != 2 {
			t.Fatalf("the caller %s Expire: seq %d, kept %v; want a later scan that sees the keep", name, r.Seq, kept(r))
		}
	}
	<-st.read

	// Cached within the TTL until the next change is announced.
	in.Keep = nil
	st.Put(in)
	if r := scanner.Result(context.Background()); r.Seq != 2 || !kept(r) {
		t.Fatalf("within the cache TTL: seq %d, want the cached scan 2", r.Seq)
	}
	scanner.Expire()
	if r := scanner.Result(context.Background()); r.Seq != 3 || kept(r) {
		t.Fatalf("after Expire: seq %d, kept %v; want scan 3 without the keep", r.Seq, kept(r))
	}
	<-st.read
}

// last_alive_at of a running instance is written when it is first seen
// running, then once every AliveWriteInterval; a container that stopped is
// written at once, with its end; one that runs again, at once.
func TestAliveWritesAreRationed(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	engine := &dockertest.Engine{}
	for i, id := range []string{"a", "b"} {
		engine.Add(dockertest.Container{ID: hexID(i + 1), State: "running", Labels: map[string]string{stale.LabelInstanceID: id}, Created: long})
	}
	st := mem(7, []stale.Instance{{ID: "a", ContainerID: hexID(1), CreatedAt: long}, {ID: "b", ContainerID: hexID(2), CreatedAt: long}}...)
	clock := &fakeClock{now: t0}
	scanner := scan.NewScanner(engine, st, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: time.Hour, Now: clock.Now},
		CacheTTL: time.Second, MaxSnapshotAge: 5 * time.Minute, AliveWriteInterval: time.Minute}, slog.New(slog.DiscardHandler))
	step := func(d time.Duration, wantWrites int, what string) {
		t.Helper()
		clock.Add(d)
		before := st.AliveWrites
		if r := scanner.Rescan(context.Background()); !r.Success {
			t.Fatalf("%s: scan failed: %v", what, r.Err)
		}
		if got := st.AliveWrites - before; got != wantWrites {
			t.Errorf("%s: %d rows written, want %d", what, got, wantWrites)
		}
	}
	step(0, 2, "first seen running")
	for range 5 {
		step(10*time.Second, 0, "within the interval")
	}
	step(10*time.Second, 2, "a minute after the first write")
	stoppedAt := clock.Now().Add(3 * time.Second)
	engine.Stop(hexID(1), stoppedAt)
	step(5*time.Second, 1, "a stopped")
	if got := st.Alive["a"]; !got.Equal(stoppedAt) {
		t.Errorf("a stopped at %v: last alive written %v, want its end", stoppedAt, got)
	}
	step(5*time.Second, 0, "a still stopped")
	engine.SetState(hexID(1), "running")
	step(5*time.Second, 1, "a runs again")
}

// With its inputs kept live, a scan stays current for LiveTTL: until a
// change outdates it, or time alone changes a verdict (a recent instance
// passing its threshold); without, for CacheTTL.
func TestLiveScansStayCurrent(t *testing.T) {
	engine := &dockertest.Engine{}
	engine.Add(dockertest.Container{ID: hexID(1), State: "exited", Labels: map[string]string{stale.LabelInstanceID: "a"}, Created: t0.Add(-30 * time.Minute), FinishedAt: t0.Add(-30 * time.Minute)})
	st := mem(7, stale.Instance{ID: "a", ContainerID: hexID(1), CreatedAt: t0.Add(-30 * time.Minute)})
	clock := &fakeClock{now: t0}
	live := true
	scanner := scan.NewScanner(engine, st, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: time.Hour, Now: clock.Now},
		CacheTTL: time.Second, MaxSnapshotAge: time.Hour, Live: func() bool { return live }, LiveTTL: time.Hour}, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	seq := func() uint64 { return scanner.Result(ctx).Seq }
	if seq() != 1 {
		t.Fatal("no first scan")
	}
	clock.Add(10 * time.Minute)
	if got := seq(); got != 1 {
		t.Errorf("live, 10 minutes on: scan %d, want the first still", got)
	}
	scanner.Outdate()
	if got := seq(); got != 2 {
		t.Errorf("outdated: scan %d, want a new one", got)
	}
	// The instance, last alive 40 minutes ago, turns stale 20 minutes on.
	clock.Add(20*time.Minute + time.Nanosecond)
	r := scanner.Result(ctx)
	if r.Seq != 3 || !r.Snapshot.Observations[0].Verdict.Stale {
		t.Errorf("past the threshold: scan %d, stale %v; want a new scan judging it stale", r.Seq, r.Snapshot.Observations[0].Verdict.Stale)
	}
	live = false
	clock.Add(2 * time.Second)
	if got := seq(); got != 4 {
		t.Errorf("not live, past CacheTTL: scan %d, want a new one", got)
	}
}
