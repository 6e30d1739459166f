package collector_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/enginefake"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// memStore is the store a scan reads, in memory.
type memStore struct {
	mu        sync.Mutex
	inv       store.Inventory
	err       error
	alive     map[string]time.Time
	adoptions []store.Adoption
}

func (m *memStore) ReadInventory(_ context.Context, dockerHost string) (store.Inventory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inv := store.Inventory{ThresholdDays: m.inv.ThresholdDays}
	for _, in := range m.inv.Instances {
		if in.DockerHost == dockerHost || in.DockerHost == "" {
			inv.Instances = append(inv.Instances, in)
		}
	}
	return inv, m.err
}

func (m *memStore) Claim(_ context.Context, dockerHost string, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, in := range m.inv.Instances {
		if in.DockerHost == "" && slices.Contains(ids, in.ID) {
			m.inv.Instances[i].DockerHost = dockerHost
		}
	}
	return m.err
}

func (m *memStore) MarkAlive(_ context.Context, ids []string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alive == nil {
		m.alive = map[string]time.Time{}
	}
	for _, id := range ids {
		m.alive[id] = at
	}
	return m.err
}

func (m *memStore) Adopt(_ context.Context, a store.Adoption) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adoptions = append(m.adoptions, a)
	m.inv.Instances = append(m.inv.Instances, stale.Instance{ID: a.InstanceID, ProjectName: a.ProjectName, StageName: a.StageName,
		ContainerID: a.ContainerID, ImageTag: a.ImageTag, Status: a.Status, CreatedAt: a.CreatedAt})
	return nil
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

func unitScanner(engine *enginefake.Engine, st *memStore, clock *fakeClock, adopt bool) *collector.Scanner {
	return collector.NewScanner(engine, st, collector.Config{DockerHost: testHost, Unowned: stale.UnownedOn,
		Threshold: time.Hour, CacheTTL: time.Second, MaxSnapshotAge: 5 * time.Minute, DockerTimeout: time.Second,
		Adopt: adopt, Now: clock.Now,
	}, slog.New(slog.DiscardHandler))
}

func TestScanJudgesEveryInstance(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	engine := &enginefake.Engine{}
	managed := func(id string) map[string]string { return map[string]string{stale.LabelInstanceID: id} }
	engine.Add(enginefake.Container{ID: hexID(1), Name: "web", State: "running", Labels: managed("i-running"), Created: long})
	engine.Add(enginefake.Container{ID: hexID(2), Name: "old", State: "exited", Labels: managed("i-exited"), Created: long, FinishedAt: long})
	engine.Add(enginefake.Container{ID: hexID(3), Name: "fresh", State: "exited", Labels: managed("i-fresh"), Created: long, FinishedAt: t0.Add(-time.Minute)})
	engine.Add(enginefake.Container{ID: hexID(4), Name: "by-name", State: "running", Created: long}) // no platform label
	engine.Add(enginefake.Container{ID: hexID(5), Name: "short", State: "created", Labels: managed("i-short"), Created: long})
	st := &memStore{inv: store.Inventory{ThresholdDays: 7, Instances: []stale.Instance{
		{ID: "i-running", ContainerID: hexID(1), CreatedAt: long},
		{ID: "i-exited", ContainerID: hexID(2), CreatedAt: long, LastAliveAt: long},
		{ID: "i-fresh", ContainerID: hexID(3), CreatedAt: long},
		{ID: "i-by-name", ContainerID: "by-name", CreatedAt: long},
		{ID: "i-short", ContainerID: hexID(5)[:12], CreatedAt: long},
		{ID: "i-gone", ContainerID: hexID(9), CreatedAt: long},
		{ID: "i-never", CreatedAt: long},
	}}}
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
	if len(st.alive) != 2 || !st.alive["i-running"].Equal(t0) || !st.alive["i-by-name"].Equal(t0) {
		t.Errorf("marked alive: %v, want the two running instances at the scan's time", st.alive)
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
	engine := &enginefake.Engine{}
	st := &memStore{inv: store.Inventory{ThresholdDays: 7}}
	for i := range 150 {
		st.inv.Instances = append(st.inv.Instances, stale.Instance{ID: fmt.Sprint(i), ContainerID: fmt.Sprintf("name-%d", i), CreatedAt: t0.Add(-48 * time.Hour)})
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
	engine := &enginefake.Engine{}
	st := &memStore{inv: store.Inventory{ThresholdDays: 7, Instances: []stale.Instance{{ID: "a", CreatedAt: t0.Add(-48 * time.Hour)}}}}
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
	st.err, engine.Down = errors.New("connection refused"), false
	if r := scanner.Rescan(context.Background()); r.StoreUp || !r.DockerUp || r.Success {
		t.Fatalf("store down: %+v", r)
	}
}

func TestAdoptionAndImageTags(t *testing.T) {
	engine := &enginefake.Engine{}
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
		engine.Add(enginefake.Container{ID: hexID(i + 1), Image: c.image, State: "exited", Labels: labels, Created: created})
	}
	engine.Add(enginefake.Container{ID: hexID(9), State: "exited", Labels: map[string]string{stale.LabelInstanceID: "not an id",
		stale.LabelProject: "shop", stale.LabelStage: "preview"}})
	st := &memStore{inv: store.Inventory{ThresholdDays: 7}}
	r := unitScanner(engine, st, &fakeClock{now: t0}, true).Rescan(context.Background())
	if !r.Success || len(st.adoptions) != 5 {
		t.Fatalf("adopted %d, want 5 (not the one whose id holds spaces): %v", len(st.adoptions), r.Err)
	}
	for i, want := range []string{"pr-17", "latest", "latest", "v2", "from-label"} {
		a := st.adoptions[i]
		if a.ImageTag != want || !a.CreatedAt.Equal(created.Truncate(time.Second)) || a.Status != stale.StatusStopped {
			t.Errorf("adoption %d: tag %q created %s status %s, want %q, the container's creation, stopped", i, a.ImageTag, a.CreatedAt, a.Status, want)
		}
	}
}

// Collect over a hand-made snapshot, every metric named.
func TestCollectNamesEveryMetric(t *testing.T) {
	last := t0.Add(-2 * time.Hour)
	snap := &stale.Snapshot{Threshold: time.Hour, ScannedAt: t0, Observations: []stale.Observation{
		{Instance: stale.Instance{ID: "a", ProjectName: "shop", StageName: "preview", ImageTag: "pr-1", ContainerID: "c1", DockerHost: "test-engine"},
			Verdict: stale.Verdict{Stale: true, LastAlive: last}},
		{Instance: stale.Instance{ID: "b", ProjectName: "shop", StageName: "prod", ImageTag: "v1", ContainerID: "c2"},
			Verdict: stale.Verdict{LastAlive: t0}},
	}}
	snap.Scope = stale.Scope{Host: "test-engine", Unowned: true}
	snap.Engines = map[string]time.Time{"test-engine": t0, "other": t0.Add(-time.Hour)}
	c := collector.New(collector.Result{Snapshot: snap, Success: true, DockerUp: true, StoreUp: true,
		Duration: 1500 * time.Millisecond, LastSuccess: t0, Seq: 1}, "test-engine")
	want := fmt.Sprintf(`
# HELP instance_last_alive_seconds Unix time the instance's container was last seen running.
# TYPE instance_last_alive_seconds gauge
instance_last_alive_seconds{container_id="c1",docker_host="test-engine",image_tag="pr-1",instance_id="a",project_name="shop",stage_name="preview"} %d
instance_last_alive_seconds{container_id="c2",docker_host="",image_tag="v1",instance_id="b",project_name="shop",stage_name="prod"} %d
# HELP instance_stale 1 if the instance's container is stale (not running for longer than the threshold), else 0.
# TYPE instance_stale gauge
instance_stale{container_id="c1",docker_host="test-engine",image_tag="pr-1",instance_id="a",project_name="shop",stage_name="preview"} 1
instance_stale{container_id="c2",docker_host="",image_tag="v1",instance_id="b",project_name="shop",stage_name="prod"} 0
# HELP stale_exporter_docker_up 1 if the Docker engine answered the latest scan.
# TYPE stale_exporter_docker_up gauge
stale_exporter_docker_up{docker_host="test-engine"} 1
# HELP stale_exporter_engine_last_seen_timestamp_seconds Unix time of the latest heartbeat of each Docker engine registered with the store.
# TYPE stale_exporter_engine_last_seen_timestamp_seconds gauge
stale_exporter_engine_last_seen_timestamp_seconds{docker_host="test-engine",engine="other"} %d
stale_exporter_engine_last_seen_timestamp_seconds{docker_host="test-engine",engine="test-engine"} %d
# HELP stale_exporter_judges_unowned 1 if this exporter judges and cleans the instances no engine owns (--docker.claim-unowned and the engines registered).
# TYPE stale_exporter_judges_unowned gauge
stale_exporter_judges_unowned{docker_host="test-engine"} 1
# HELP stale_exporter_last_scan_timestamp_seconds Unix time of the last successful scan.
# TYPE stale_exporter_last_scan_timestamp_seconds gauge
stale_exporter_last_scan_timestamp_seconds{docker_host="test-engine"} %d
# HELP stale_exporter_scan_duration_seconds Duration of the latest scan.
# TYPE stale_exporter_scan_duration_seconds gauge
stale_exporter_scan_duration_seconds{docker_host="test-engine"} 1.5
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 1
# HELP stale_exporter_store_up 1 if the store answered the latest scan.
# TYPE stale_exporter_store_up gauge
stale_exporter_store_up{docker_host="test-engine"} 1
# HELP stale_exporter_threshold_seconds Time a container must have been down before its instance is stale.
# TYPE stale_exporter_threshold_seconds gauge
stale_exporter_threshold_seconds{docker_host="test-engine"} 3600
# HELP stale_exporter_unowned_instances Instances no Docker engine owns yet (instances.docker_host NULL), as this exporter's last good scan read them.
# TYPE stale_exporter_unowned_instances gauge
stale_exporter_unowned_instances{docker_host="test-engine"} 1
`, last.Unix(), t0.Unix(), t0.Add(-time.Hour).Unix(), t0.Unix(), t0.Unix())
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 2*2+10 {
		t.Fatalf("%d series, want 2 per instance and 10 of the scan", n)
	}
	// No snapshot: the scan's health only, never an instance.
	if n := testutil.CollectAndCount(collector.New(collector.Result{Seq: 2}, "test-engine"), "instance_stale", "instance_last_alive_seconds"); n != 0 {
		t.Fatalf("without a snapshot, %d instance series", n)
	}
}

// Each exporter judges only what its engine owns; an unowned instance is
// claimed by the engine that lists its container with its instance label.
func TestOwnershipByObservation(t *testing.T) {
	long := t0.Add(-48 * time.Hour)
	engine := &enginefake.Engine{}
	managed := func(id string) map[string]string { return map[string]string{stale.LabelInstanceID: id} }
	engine.Add(enginefake.Container{ID: hexID(1), State: "exited", Labels: managed("mine"), Created: long})
	engine.Add(enginefake.Container{ID: hexID(2), State: "exited", Labels: managed("unowned-here"), Created: long})
	// The same id string another host's row names, labelled for another instance.
	engine.Add(enginefake.Container{ID: hexID(3), State: "exited", Labels: managed("someone-else"), Created: long})
	st := &memStore{inv: store.Inventory{ThresholdDays: 1, Instances: []stale.Instance{
		{ID: "mine", ContainerID: hexID(1), CreatedAt: long, DockerHost: "a"},
		{ID: "theirs", ContainerID: hexID(1), CreatedAt: long, DockerHost: "b"},
		{ID: "unowned-here", ContainerID: hexID(2), CreatedAt: long},
		{ID: "unowned-elsewhere", ContainerID: hexID(7), CreatedAt: long},
		{ID: "same-id-string", ContainerID: hexID(3), CreatedAt: long},
	}}}
	for _, claimUnowned := range []bool{false, true} {
		st := &memStore{inv: store.Inventory{ThresholdDays: 1, Instances: append([]stale.Instance(nil), st.inv.Instances...)}}
		mode := stale.UnownedOff
		if claimUnowned {
			mode = stale.UnownedOn
		}
		scanner := collector.NewScanner(engine, st, collector.Config{DockerHost: "a", Unowned: mode,
			MaxSnapshotAge: time.Minute, DockerTimeout: time.Second, Now: (&fakeClock{now: t0}).Now}, slog.New(slog.DiscardHandler))
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
		for _, in := range st.inv.Instances {
			owners[in.ID] = in.DockerHost
		}
		if owners["unowned-here"] != "a" || owners["same-id-string"] != "" || owners["unowned-elsewhere"] != "" || owners["theirs"] != "b" {
			t.Errorf("claim-unowned=%v: owners after the scan %v", claimUnowned, owners)
		}
	}
}
