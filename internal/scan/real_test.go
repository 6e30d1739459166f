package scan_test

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

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

const threshold = time.Hour

// clock runs the scanners' clock ahead, so that containers created by a
// test are older than the threshold by it (a container's creation counts as
// a sign of life) without waiting for an hour.
var clock = testenv.Ahead(3 * threshold / 2)

var (
	old    = clock().Add(-2 * threshold)
	recent = clock().Add(-threshold / 2)
)

// countingDocker counts the calls a scan makes to the real engine.
type countingDocker struct {
	scan.Docker
	lists, inspects atomic.Int64
}

func (d *countingDocker) List(ctx context.Context) ([]stale.Container, error) {
	d.lists.Add(1)
	return d.Docker.List(ctx)
}

func (d *countingDocker) Inspect(ctx context.Context, ref string) (stale.Container, error) {
	d.inspects.Add(1)
	return d.Docker.Inspect(ctx, ref)
}

func newScanner(docker scan.Docker, st scan.Store, adopt bool) *scan.Scanner {
	return scan.NewScanner(docker, st, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: threshold, Now: clock}, CacheTTL: 0, MaxSnapshotAge: time.Minute, Adopt: adopt}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func managed(id string) map[string]string {
	return map[string]string{stale.LabelInstanceID: id}
}

// verdicts scans and returns each instance's observation by instance id.
func verdicts(t *testing.T, s *scan.Scanner) map[string]stale.Observation {
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

	counting := &countingDocker{Docker: dockertest.Local(t)}
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
	engine := dockertest.Connect(t, host)

	// Healthy: a young created-only instance is not stale. Then Docker goes
	// away while the instance ages past the threshold.
	id := db.AddInstance(t, storetest.Instance{CreatedAt: clock().Add(-threshold + 2*time.Second), ContainerID: "feed"})
	scanner := newScanner(engine, db.Store, false)
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

	c := collector.New(scanner.Result(context.Background()), testenv.EngineName)
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
	db.AddInstance(t, storetest.Instance{CreatedAt: old})
	r := newScanner(&dockertest.Engine{Down: true}, db.Store, false).Rescan(context.Background())
	if r.Success || r.DockerUp || r.Snapshot != nil || !r.LastSuccess.IsZero() {
		t.Fatalf("never-successful scanner: %+v", r)
	}
}

func TestConcurrentScrapesShareOneScan(t *testing.T) {
	db := storetest.New(t)
	counting := &countingDocker{Docker: dockertest.Local(t)}
	scanner := scan.NewScanner(counting, db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: threshold}, CacheTTL: time.Minute, MaxSnapshotAge: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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

	engine := dockertest.Local(t)
	got := verdicts(t, newScanner(engine, db.Store, true))
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
	if got := verdicts(t, newScanner(engine, db2.Store, false)); len(got) != 0 {
		t.Fatalf("adoption off: snapshot has %d instances", len(got))
	}
}
