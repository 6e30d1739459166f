package collector_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/storetest"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
)

// A threshold too large for a time.Duration used to wrap negative and make a
// container stopped minutes ago stale. Out of range now fails the scan safe.
func TestThresholdOutOfRangeFailsSafe(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	id := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old})
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id,
		testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(id), Start: true, Exit: true}))
	// The platform's column may lack this repo's CHECK constraint.
	db.Exec(t, "ALTER TABLE settings DROP CONSTRAINT IF EXISTS settings_stale_threshold_days_check")

	for _, days := range []int64{365000, 36501, 0, -1} {
		db.Exec(t, "UPDATE settings SET stale_threshold_days = $1", days)
		var logs bytes.Buffer
		scanner := collector.NewScanner(docker, db.Store, collector.Config{DockerHost: testHost, ClaimUnowned: true,
			MaxSnapshotAge: time.Minute, DockerTimeout: 5 * time.Second,
		}, slog.New(slog.NewTextHandler(&logs, nil)))
		r := scanner.Rescan(context.Background())
		if r.Success || r.Snapshot != nil || !r.DockerUp || !r.StoreUp {
			t.Fatalf("days=%d: success=%v snapshot=%v docker_up=%v store_up=%v, want a failed scan with both up",
				days, r.Success, r.Snapshot != nil, r.DockerUp, r.StoreUp)
		}
		if want := "stale_threshold_days = " + strconv.FormatInt(days, 10); !strings.Contains(logs.String(), want) {
			t.Errorf("days=%d: log does not name the value (%q): %s", days, want, logs.String())
		}
		if err := testutil.CollectAndCompare(collector.New(scanner, 5*time.Second, testHost), strings.NewReader(`
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 0
`), "stale_exporter_scan_success", "instance_stale", "stale_exporter_threshold_seconds"); err != nil {
			t.Errorf("days=%d: %v", days, err)
		}
	}
	// The largest value in range works and judges nothing stale.
	db.Exec(t, "UPDATE settings SET stale_threshold_days = $1", stale.MaxThresholdDays)
	scanner := collector.NewScanner(docker, db.Store, collector.Config{DockerHost: testHost, ClaimUnowned: true, MaxSnapshotAge: time.Minute, DockerTimeout: 5 * time.Second},
		slog.New(slog.DiscardHandler))
	if r := scanner.Rescan(context.Background()); !r.Success || r.Snapshot.StaleCount() != 0 || r.Snapshot.Threshold != stale.MaxThreshold {
		t.Fatalf("100 years: success=%v err=%v", r.Success, r.Err)
	}
}

// A 30-day-old instance whose platform just created its new container (not
// started yet) is a redeploy in progress, not a stale instance.
func TestRedeployInProgressIsNotStale(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	monthAgo := time.Now().Add(-30 * 24 * time.Hour)
	id := db.AddInstance(t, storetest.Instance{CreatedAt: monthAgo, LastAliveAt: monthAgo, Status: "deploying"})
	cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(id)})
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)

	scanner := collector.NewScanner(docker, db.Store, collector.Config{DockerHost: testHost, ClaimUnowned: true,
		Threshold: threshold, MaxSnapshotAge: time.Minute, DockerTimeout: 5 * time.Second,
	}, slog.New(slog.DiscardHandler))
	o := verdicts(t, scanner)[id]
	if o.Verdict.Stale || o.Verdict.Reason != stale.ReasonRecent || time.Since(o.Verdict.LastAlive) > time.Minute {
		t.Fatalf("redeploy in progress: %+v, want not stale, last alive at the container's creation", o.Verdict)
	}
}

// Rows may name their container by name, or a container without the
// platform's label: it is looked up before it counts as missing.
func TestUnlistedContainersAreLookedUp(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	byName := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old})
	unlabelled := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old})
	stoppedUnlabelled := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old})
	missing := db.AddInstance(t, storetest.Instance{CreatedAt: old, LastAliveAt: old,
		ContainerID: "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0000"})

	named := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: managed(byName), Start: true})
	res, err := docker.ContainerInspect(context.Background(), named, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", byName, strings.TrimPrefix(res.Container.Name, "/"))
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", unlabelled,
		testenv.NewContainer(t, docker, testenv.ContainerSpec{Start: true}))
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", stoppedUnlabelled,
		testenv.NewContainer(t, docker, testenv.ContainerSpec{}))

	counting := &countingDocker{Docker: docker}
	scanner := newScanner(counting, db.Store, false)
	got := verdicts(t, scanner)
	for id, want := range map[string]struct {
		stale bool
		state string
	}{
		byName:            {false, "running"},
		unlabelled:        {false, "running"},
		stoppedUnlabelled: {true, "created"},
		missing:           {true, stale.StateMissing},
	} {
		if o := got[id]; o.Verdict.Stale != want.stale || o.Container.DockerState() != want.state {
			t.Errorf("instance %s: stale=%v state=%q, want stale=%v state=%q", id, o.Verdict.Stale, o.Container.DockerState(), want.stale, want.state)
		}
	}
	if la := db.LastAliveAt(t, unlabelled); !la.After(old) {
		t.Errorf("running unlabelled container: last_alive_at not advanced")
	}
	// Three found containers are asked again each scan (their state moves);
	// the 404 of a full id is final and cached.
	first := counting.inspects.Load()
	verdicts(t, scanner)
	if again := counting.inspects.Load() - first; again != 3 || first < 4 {
		t.Errorf("inspects: first scan %d, second scan %d; want at least 4 then 3", first, again)
	}
}

// A store without its settings row answers; the scan fails with a clear
// error, not with store_up 0.
func TestMissingSettingsRow(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	db.Exec(t, "DELETE FROM settings")
	scanner := collector.NewScanner(docker, db.Store, collector.Config{DockerHost: testHost, ClaimUnowned: true, MaxSnapshotAge: time.Minute, DockerTimeout: 5 * time.Second},
		slog.New(slog.DiscardHandler))
	r := scanner.Rescan(context.Background())
	if r.Success || !r.StoreUp || !r.DockerUp || !errors.Is(r.Err, store.ErrNoSettings) {
		t.Fatalf("no settings row: success=%v store_up=%v docker_up=%v err=%v", r.Success, r.StoreUp, r.DockerUp, r.Err)
	}
}
