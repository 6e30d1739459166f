package scan_test

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
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
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
		scanner := scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn}, MaxSnapshotAge: time.Minute}, slog.New(slog.NewTextHandler(&logs, nil)))
		r := scanner.Rescan(context.Background())
		if r.Success || r.Snapshot != nil || !r.DockerUp || !r.StoreUp {
			t.Fatalf("days=%d: success=%v snapshot=%v docker_up=%v store_up=%v, want a failed scan with both up",
				days, r.Success, r.Snapshot != nil, r.DockerUp, r.StoreUp)
		}
		if want := "stale_threshold_days = " + strconv.FormatInt(days, 10); !strings.Contains(logs.String(), want) {
			t.Errorf("days=%d: log does not name the value (%q): %s", days, want, logs.String())
		}
		if err := testutil.CollectAndCompare(collector.New(scanner.Result(context.Background()), testenv.EngineName), strings.NewReader(`
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 0
`), "stale_exporter_scan_success", "instance_stale", "stale_exporter_threshold_seconds"); err != nil {
			t.Errorf("days=%d: %v", days, err)
		}
	}
	// The largest value in range works and judges nothing stale.
	db.Exec(t, "UPDATE settings SET stale_threshold_days = $1", stale.MaxThresholdDays)
	scanner := scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn}, MaxSnapshotAge: time.Minute},
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

	scanner := scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: threshold}, MaxSnapshotAge: time.Minute}, slog.New(slog.DiscardHandler))
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

	counting := &countingDocker{Docker: dockertest.Local(t)}
	scanner := newScanner(counting, db.Store, false)
	got := verdicts(t, scanner)
	for id, want := range map[string]struct {
		stale bool
		state string
	}{
		byName:     {false, "running"},
		unlabelled: {false, "running"},
		// Not the instance's by its label: never stale, as cleanup would
		// never remove it.
		stoppedUnlabelled: {false, "created"},
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

// settings must hold exactly one integer number of days. Anything else
// (no row, NULL, two rows, 1.4 that a cast would round to 1, text) answers,
// so the store is up, and fails the scan safe, naming the problem; a
// threshold override does without settings.
func TestSettingsAreReadExactly(t *testing.T) {
	for _, c := range []struct {
		name, setup, errorHas string
		keyValue              bool
	}{
		{"no row", "DELETE FROM settings", "has no stale_threshold_days", false},
		{"NULL", "ALTER TABLE settings ALTER COLUMN stale_threshold_days DROP NOT NULL; UPDATE settings SET stale_threshold_days = NULL", "is NULL", false},
		{"two rows", "ALTER TABLE settings DROP CONSTRAINT settings_pkey, DROP CONSTRAINT settings_id_check; INSERT INTO settings (id, stale_threshold_days) VALUES (false, 1)",
			"more than one", false},
		{"1.4 days in a numeric column", "ALTER TABLE settings ALTER COLUMN stale_threshold_days TYPE numeric; UPDATE settings SET stale_threshold_days = 1.4",
			`"1.4"`, false},
		{"key/value text", "UPDATE settings SET value = '7 days' WHERE key = 'stale_threshold_days'", `"7 days"`, true},
		{"key/value twice", "INSERT INTO settings VALUES ('stale_threshold_days', '1')", "more than one", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			platform := ""
			if c.keyValue {
				// key/value rows without a unique key, as a platform may keep them.
				platform = textIDPlatformSettings
			}
			db := storetest.NewShaped(t, platform)
			db.Exec(t, c.setup)
			r := scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn}, MaxSnapshotAge: time.Minute}, slog.New(slog.DiscardHandler)).Rescan(context.Background())
			if r.Success || !r.StoreUp || !r.DockerUp || !errors.Is(r.Err, store.ErrSettings) || !strings.Contains(r.Err.Error(), c.errorHas) {
				t.Fatalf("success=%v store_up=%v docker_up=%v err=%v; want a failed scan with both up, naming %s", r.Success, r.StoreUp, r.DockerUp, r.Err, c.errorHas)
			}
			if _, err := db.Store.ThresholdDays(context.Background()); !errors.Is(err, store.ErrSettings) {
				t.Fatalf("ThresholdDays: %v, want ErrSettings", err)
			}
			r = scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: time.Hour}, MaxSnapshotAge: time.Minute}, slog.New(slog.DiscardHandler)).Rescan(context.Background())
			if !r.Success {
				t.Fatalf("with a threshold override: %v", r.Err)
			}
		})
	}
	for raw, want := range map[string]int64{"7": 7, "7.0": 7, `"3"`: 3} {
		db := storetest.NewShaped(t, textIDPlatformSettings)
		db.Exec(t, "UPDATE settings SET value = $1 WHERE key = 'stale_threshold_days'", raw)
		if days, err := db.Store.ThresholdDays(context.Background()); err != nil || days != want {
			t.Errorf("value %s: %d %v, want %d", raw, days, err, want)
		}
	}
}

// textIDPlatformSettings is a platform whose settings are key/value rows
// with no unique key.
const textIDPlatformSettings = `CREATE TABLE settings (key text NOT NULL, value text);
INSERT INTO settings VALUES ('stale_threshold_days', '7'), ('theme', 'dark');`
