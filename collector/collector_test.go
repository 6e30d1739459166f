package collector_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/storetest"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

const threshold = time.Hour

// skew sets the scanners' clock ahead, so that containers created by a test
// are older than the threshold by that clock (a container's creation counts
// as a sign of life) without waiting for an hour.
const skew = 3 * threshold / 2

func clock() time.Time { return time.Now().Add(skew) }

var (
	old    = clock().Add(-2 * threshold)
	recent = clock().Add(-threshold / 2)
)

// countingDocker counts the calls a scan makes to the real engine.
type countingDocker struct {
	collector.Docker
	lists, inspects atomic.Int64
}

func (d *countingDocker) ContainerList(ctx context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	d.lists.Add(1)
	return d.Docker.ContainerList(ctx, o)
}

func (d *countingDocker) ContainerInspect(ctx context.Context, id string, o client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	d.inspects.Add(1)
	return d.Docker.ContainerInspect(ctx, id, o)
}

func newScanner(docker collector.Docker, st collector.Store, adopt bool) *collector.Scanner {
	return collector.NewScanner(docker, st, collector.Config{DockerHost: testHost, Unowned: stale.UnownedOn,
		Threshold:      threshold,
		CacheTTL:       0,
		MaxSnapshotAge: time.Minute,
		DockerTimeout:  5 * time.Second,
		Adopt:          adopt,
		Now:            clock,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func managed(id string) map[string]string {
	return map[string]string{stale.LabelInstanceID: id}
}

// verdicts scans and returns each instance's observation by instance id.
func verdicts(t *testing.T, s *collector.Scanner) map[string]stale.Observation {
	t.Helper()
	r := s.Rescan(context.Background())
	if !r.Success {
		t.Fatalf("scan failed: %v", r.Err)
	}
	out := map[string]stale.Observation{}
	for _, o := range r.Snapshot.Observations {
		out[o.Instance.ID] = o
	}
	return out
}

func TestStaleRuleOnRealContainers(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)

	// Ids are taken before the containers exist, as the platform does.
	running := db.AddInstance(t, storetest.Instance{Status: stale.StatusRunning, CreatedAt: old})
	db.Exec(t, "UPDATE instances SET last_alive_at = $2 WHERE id = $1", running, old)
	runningCID := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(running), Start: true})

	createdOld := db.AddInstance(t, storetest.Instance{CreatedAt: old})
	createdYoung := db.AddInstance(t, storetest.Instance{CreatedAt: recent})
	gone := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old, ContainerID: "0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcdef"})
	removing := db.AddInstance(t, storetest.Instance{CreatedAt: old, Status: stale.StatusRemoving})
	kept := db.AddInstance(t, storetest.Instance{CreatedAt: old})
	exitedNow := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old})
	// The platform may store the 12-character id docker ps shows.
	shortRunning := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old})

	set := func(id, cid string) { db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid) }
	set(running, runningCID)
	set(createdOld, testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(createdOld)}))
	set(createdYoung, testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(createdYoung)}))
	set(removing, testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(removing)}))
	keptLabels := managed(kept)
	keptLabels[stale.LabelKeep] = "true"
	set(kept, testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: keptLabels}))
	set(exitedNow, testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(exitedNow), Start: true, Exit: true}))
	set(shortRunning, testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(shortRunning), Start: true})[:12])

	counting := &countingDocker{Docker: docker}
	scanner := newScanner(counting, db.Store, false)
	before := time.Now()
	got := verdicts(t, scanner)

	want := map[string]struct {
		stale  bool
		reason stale.Reason
		state  string
	}{
		running:      {false, stale.ReasonRunning, "running"},
		createdOld:   {true, stale.ReasonStale, "created"},
		createdYoung: {false, stale.ReasonRecent, "created"},
		gone:         {true, stale.ReasonStale, stale.StateMissing},
		removing:     {false, stale.ReasonRemoving, "created"},
		kept:         {false, stale.ReasonKept, "created"},
		exitedNow:    {true, stale.ReasonStale, "exited"},
		shortRunning: {false, stale.ReasonRunning, "running"},
	}
	for id, w := range want {
		o, ok := got[id]
		if !ok {
			t.Errorf("instance %s missing from snapshot", id)
			continue
		}
		if o.Verdict.Stale != w.stale || o.Verdict.Reason != w.reason || o.Container.DockerState() != w.state {
			t.Errorf("instance %s: stale=%v reason=%q state=%q, want stale=%v reason=%q state=%q",
				id, o.Verdict.Stale, o.Verdict.Reason, o.Container.DockerState(), w.stale, w.reason, w.state)
		}
	}
	if la := db.LastAliveAt(t, running); la.Before(before) {
		t.Errorf("running instance: last_alive_at = %v, want advanced past %v", la, before)
	}
	if la := db.LastAliveAt(t, exitedNow); !la.Equal(old.Truncate(time.Microsecond)) {
		t.Errorf("exited instance: last_alive_at moved to %v", la)
	}
	if la := got[exitedNow].Verdict.LastAlive; time.Since(la) > time.Minute {
		t.Errorf("exited instance: last alive %v, want Docker's recent FinishedAt", la)
	}

	// Five stopped containers were inspected once, and the missing one looked
	// up once (404); a second scan reuses both caches.
	if n := counting.inspects.Load(); n != 6 {
		t.Errorf("first scan inspected %d containers, want 6", n)
	}
	verdicts(t, scanner)
	if n := counting.inspects.Load(); n != 6 {
		t.Errorf("second scan inspected again: %d inspects in all, want 6", n)
	}
	if n := counting.lists.Load(); n != 2 {
		t.Errorf("two scans listed containers %d times, want 2", n)
	}
}

func TestMetricsExposition(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	staleID := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: "preview", ImageTag: "pr-17", CreatedAt: old, LastAliveAt: old})
	cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(staleID)})
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", staleID, cid)

	c := collector.New(newScanner(docker, db.Store, false).Result(context.Background()), testHost)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	// The container's creation is its instance's latest sign of life.
	res, err := docker.ContainerInspect(context.Background(), cid, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created, err := time.Parse(time.RFC3339Nano, res.Container.Created)
	if err != nil {
		t.Fatal(err)
	}
	lastAlive := float64(created.Unix())
	labels := `container_id="` + cid + `",docker_host="test-engine",image_tag="pr-17",instance_id="` + staleID + `",project_name="shop",stage_name="preview"`
	want := `
# HELP instance_stale 1 if the instance's container is stale (not running for longer than the threshold), else 0.
# TYPE instance_stale gauge
instance_stale{` + labels + `} 1
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 1
# HELP stale_exporter_docker_up 1 if the Docker engine answered the latest scan.
# TYPE stale_exporter_docker_up gauge
stale_exporter_docker_up{docker_host="test-engine"} 1
# HELP stale_exporter_store_up 1 if the store answered the latest scan.
# TYPE stale_exporter_store_up gauge
stale_exporter_store_up{docker_host="test-engine"} 1
# HELP stale_exporter_threshold_seconds Time a container must have been down before its instance is stale.
# TYPE stale_exporter_threshold_seconds gauge
stale_exporter_threshold_seconds{docker_host="test-engine"} 3600
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "instance_stale", "stale_exporter_scan_success",
		"stale_exporter_docker_up", "stale_exporter_store_up", "stale_exporter_threshold_seconds"); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "instance_last_alive_seconds" {
			if got := f.GetMetric()[0].GetGauge().GetValue(); got != lastAlive {
				t.Errorf("instance_last_alive_seconds = %f, want %f", got, lastAlive)
			}
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "instance", "job", "stage":
					t.Errorf("metric %s uses reserved label %q", f.GetName(), l.GetName())
				}
			}
		}
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestDockerUnreachable(t *testing.T) {
	testenv.Docker(t)
	db := storetest.New(t)
	// The real engine, behind a front that can cut it off.
	var down atomic.Bool
	host := testenv.DockerProxy(t, func(w http.ResponseWriter, _ *http.Request) bool {
		if !down.Load() {
			return false
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return true
	})
	docker, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	defer docker.Close()

	// Healthy: a young created-only instance is not stale. Then Docker goes
	// away while the instance ages past the threshold.
	id := db.AddInstance(t, storetest.Instance{CreatedAt: clock().Add(-threshold + 2*time.Second), ContainerID: "feed"})
	scanner := newScanner(docker, db.Store, false)
	r := scanner.Rescan(context.Background())
	if !r.Success || r.Snapshot.StaleCount() != 0 {
		t.Fatalf("healthy scan: success=%v stale=%d err=%v", r.Success, r.Snapshot.StaleCount(), r.Err)
	}
	down.Store(true)
	time.Sleep(3 * time.Second)
	r = scanner.Rescan(context.Background())
	if r.Success || r.DockerUp || !r.StoreUp || r.Err == nil {
		t.Fatalf("scan with Docker down: success=%v docker_up=%v store_up=%v err=%v", r.Success, r.DockerUp, r.StoreUp, r.Err)
	}
	if r.Snapshot == nil || r.Snapshot.StaleCount() != 0 || r.Snapshot.Observations[0].Instance.ID != id {
		t.Fatalf("Docker down: want the last good snapshot with nothing stale, got %+v", r.Snapshot)
	}

	c := collector.New(scanner.Result(context.Background()), testHost)
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP instance_stale 1 if the instance's container is stale (not running for longer than the threshold), else 0.
# TYPE instance_stale gauge
instance_stale{container_id="feed",docker_host="",image_tag="",instance_id="`+id+`",project_name="shop",stage_name="preview"} 0
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 0
# HELP stale_exporter_docker_up 1 if the Docker engine answered the latest scan.
# TYPE stale_exporter_docker_up gauge
stale_exporter_docker_up{docker_host="test-engine"} 0
`), "instance_stale", "stale_exporter_scan_success", "stale_exporter_docker_up"); err != nil {
		t.Fatal(err)
	}

	down.Store(false)
	r = scanner.Rescan(context.Background())
	if !r.Success || r.Snapshot.StaleCount() != 1 {
		t.Fatalf("Docker back: success=%v stale=%d err=%v", r.Success, r.Snapshot.StaleCount(), r.Err)
	}
}

func TestSnapshotExpiresWhileScansFail(t *testing.T) {
	db := storetest.New(t)
	docker, err := client.New(client.WithHost("unix:///nonexistent/docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer docker.Close()
	db.AddInstance(t, storetest.Instance{CreatedAt: old})
	r := newScanner(docker, db.Store, false).Rescan(context.Background())
	if r.Success || r.DockerUp || r.Snapshot != nil || !r.LastSuccess.IsZero() {
		t.Fatalf("never-successful scanner: %+v", r)
	}
}

func TestConcurrentScrapesShareOneScan(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	counting := &countingDocker{Docker: docker}
	scanner := collector.NewScanner(counting, db.Store, collector.Config{DockerHost: testHost, Unowned: stale.UnownedOn,
		Threshold: threshold, CacheTTL: time.Minute, MaxSnapshotAge: time.Minute, DockerTimeout: 5 * time.Second,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := scanner.Result(context.Background()); !r.Success {
				t.Errorf("scan failed: %v", r.Err)
			}
		}()
	}
	wg.Wait()
	scanner.Result(context.Background())
	if n := counting.lists.Load(); n != 1 {
		t.Fatalf("21 scrapes within the cache TTL listed containers %d times, want 1", n)
	}
}

func TestAdoption(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	const id = "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	labels := managed(id)
	labels[stale.LabelProject] = "blog"
	labels[stale.LabelStage] = "staging"
	labels[stale.LabelImageTag] = "v2"
	cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: labels, Start: true})
	unlabelled := managed("7f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
	testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: unlabelled})

	got := verdicts(t, newScanner(docker, db.Store, true))
	o, ok := got[id]
	if !ok {
		t.Fatalf("adopted instance missing from snapshot: %+v", got)
	}
	if o.Instance.ProjectName != "blog" || o.Instance.StageName != "staging" || o.Instance.ImageTag != "v2" ||
		o.Instance.ContainerID != cid || o.Instance.Status != stale.StatusRunning || o.Verdict.Stale {
		t.Fatalf("adopted instance = %+v", o)
	}
	if len(got) != 1 {
		t.Fatalf("snapshot has %d instances, want only the adopted one", len(got))
	}
	if n := db.Count(t, "SELECT count(*) FROM event_log WHERE source = 'stale' AND instance_id = $1", id); n != 1 {
		t.Fatalf("adoption events = %d, want 1", n)
	}
	// Without --docker.adopt nothing is created.
	db2 := storetest.New(t)
	if got := verdicts(t, newScanner(docker, db2.Store, false)); len(got) != 0 {
		t.Fatalf("adoption off: snapshot has %d instances", len(got))
	}
}
