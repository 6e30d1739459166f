package cleanup_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// A platform whose ids are text, and not UUIDs.
const textIDTables = `
CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE stages (id text PRIMARY KEY, project_id text NOT NULL, name text NOT NULL, UNIQUE (project_id, name));
CREATE TABLE instances (
    id text PRIMARY KEY, stage_id text NOT NULL, project_id text NOT NULL,
    container_id text, image_tag text, status text NOT NULL DEFAULT 'stopped',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO settings VALUES ('stale_threshold_days', '1');
INSERT INTO projects VALUES ('p1', 'shop');
INSERT INTO stages VALUES ('s1', 'p1', 'preview');
`

// Ids of any shape: text ids that are not UUIDs (p1, inst-0001, a ULID)
// were refused by scans ("invalid input syntax for type uuid"), by the API
// (400) and by the webhook (invalid); with an event_log whose id columns are
// uuid, or that does not fit, the event of a removal failed after the
// container was gone, leaving a false record. Each shape now scans, cleans
// by every trigger and records its events.
func TestIDsOfAnyShape(t *testing.T) {
	for _, c := range []struct {
		name, eventLog, eventTable string
		// idsInColumns: the event's id columns hold the ids (else NULL,
		// with the ids in the details).
		idsInColumns bool
	}{
		{"event_log with text ids", `CREATE TABLE event_log (id bigserial PRIMARY KEY, severity text NOT NULL, source text NOT NULL,
			message text NOT NULL, project_id text, instance_id text, details jsonb);`, "event_log", true},
		{"event_log with uuid ids", `CREATE TABLE event_log (id bigserial PRIMARY KEY, severity text NOT NULL, source text NOT NULL,
			message text NOT NULL, project_id uuid, instance_id uuid, details jsonb);`, "event_log", false},
		{"event_log that does not fit", `CREATE TABLE event_log (id bigserial PRIMARY KEY, severity text NOT NULL, source text NOT NULL,
			message text NOT NULL, actor text NOT NULL);`, "stale_exporter_events", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := storetest.NewShaped(t, textIDTables+c.eventLog)
			e := newEnv(t, envOptions{db: db, storeThreshold: true, now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
			add := func(id string, start bool) string {
				cid := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: start})
				db.Exec(t, `INSERT INTO instances (id, stage_id, project_id, container_id, image_tag, created_at)
					VALUES ($1, 's1', 'p1', $2, 'pr-1', now() - interval '10 days')`, id, cid)
				return cid
			}
			for _, id := range []string{"run-1", "run-2", "run-3", "run-4"} {
				add(id, true)
			}
			ids := []string{"inst-0001", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"}
			cids := map[string]string{}
			for _, id := range ids {
				cids[id] = add(id, false)
			}
			r := e.scanner.Rescan(context.Background())
			if !r.Success || r.Snapshot.StaleCount() != len(ids) {
				t.Fatalf("scan: success=%v err=%v", r.Success, r.Err)
			}
			if res := e.do(http.MethodPost, "/api/containers/stale/inst-0001/cleanup?dry_run=true", auth.RoleOperator, "", nil); res.status != http.StatusOK {
				t.Fatalf("dry run: %d %q", res.status, res.Error)
			}
			if res := e.do(http.MethodPost, "/api/containers/stale/inst-0001/cleanup", auth.RoleOperator, "", nil); res.status != http.StatusOK {
				t.Fatalf("single cleanup: %d %q", res.status, res.Error)
			}
			res := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(ids[1], cids[ids[1]], true, time.Now())))
			if res.status != http.StatusOK || !strings.Contains(string(res.Data), `"cleanup_requested"`) {
				t.Fatalf("webhook: %d %s %s", res.status, res.Data, res.Error)
			}
			if result, reason := e.waitJobs(ids[1]); result != store.ResultRemoved {
				t.Fatalf("webhook job: %s %q", result, reason)
			}
			if res := e.postJSON("/api/containers/stale/cleanup", auth.RoleAdmin, map[string]any{}); res.status != http.StatusOK {
				t.Fatalf("bulk: %d %q", res.status, res.Error)
			}
			if res := e.do(http.MethodPost, "/api/containers/stale/no-such-id/cleanup", auth.RoleOperator, "", nil); res.status != http.StatusNotFound {
				t.Fatalf("unknown text id: %d %q, want 404", res.status, res.Error)
			}
			for _, id := range ids {
				if e.instanceExists(id) || e.containerExists(cids[id]) {
					t.Errorf("%s: not removed (row %v, container %v)", id, e.instanceExists(id), e.containerExists(cids[id]))
				}
				// An id a uuid column cannot hold is in the details.
				column := "coalesce(instance_id::text, details->>'instance_id')"
				if c.idsInColumns {
					column = "instance_id::text"
				}
				if n := db.Count(t, "SELECT count(*) FROM "+c.eventTable+" WHERE message LIKE 'removed %' AND "+column+" = $1", id); n != 1 {
					t.Errorf("%s: %d removal events in %s by %s, want 1", id, n, c.eventTable, column)
				}
			}
			if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE state <> 'done' OR result <> 'removed'"); n != 0 {
				t.Errorf("%d jobs not done as removed", n)
			}
		})
	}
}

// A UUID platform asked about an id that is not a UUID knows no such
// instance: 404, never a store error.
func TestUUIDPlatformAnswersOtherIDsUnknown(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, path := range []string{"/api/containers/stale/inst-0001/cleanup", "/api/containers/stale/6F1C2A9E-3B4D-4E5F-8A9B-0C1D2E3F4A5B/cleanup"} {
		if r := e.do(http.MethodPost, path, auth.RoleOperator, "", nil); r.status != http.StatusNotFound {
			t.Errorf("%s: %d %q, want 404", path, r.status, r.Error)
		}
	}
	// An upper-case UUID names the same instance as its lower-case form.
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	if r := e.do(http.MethodPost, "/api/containers/stale/"+strings.ToUpper(id)+"/cleanup", auth.RoleOperator, "", nil); r.status != http.StatusOK {
		t.Fatalf("upper-case id: %d %q", r.status, r.Error)
	}
	if e.containerExists(cid) || e.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1", id) != 1 {
		t.Fatal("the job does not carry the id as the platform stores it")
	}
}

// Adoption creates ids the platform accepts, or refuses and says so: a
// text-id platform adopts any id; a UUID platform refuses an id that is not
// one, once in the log, and the scan goes on.
func TestAdoptionFitsThePlatformsIDs(t *testing.T) {
	docker := testenv.Docker(t)
	labels := func(id string) map[string]string {
		return map[string]string{stale.LabelInstanceID: id, stale.LabelProject: "shop", stale.LabelStage: "review"}
	}
	textDB := storetest.NewShaped(t, textIDTables+`CREATE TABLE event_log (id bigserial PRIMARY KEY, severity text NOT NULL,
		source text NOT NULL, message text NOT NULL, project_id text, instance_id text, details jsonb);`)
	uuidDB := storetest.New(t)
	testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: labels("inst-0042")})
	for _, c := range []struct {
		db      *storetest.DB
		adopted int
	}{{textDB, 1}, {uuidDB, 0}} {
		var logs bytes.Buffer
		scanner := scan.NewScanner(dockertest.Local(t), c.db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName,
			Unowned: stale.UnownedOn, Threshold: threshold}, Adopt: true, MaxSnapshotAge: time.Minute}, slog.New(slog.NewTextHandler(&logs, nil)))
		for range 2 {
			if r := scanner.Rescan(context.Background()); !r.Success {
				t.Fatalf("scan with adoption: %v", r.Err)
			}
		}
		if n := c.db.Count(t, "SELECT count(*) FROM instances WHERE id::text = 'inst-0042'"); n != c.adopted {
			t.Errorf("%s ids: %d adopted, want %d", c.db.Store.Shape().IDTypes["instances"], n, c.adopted)
		}
		if refusals := strings.Count(logs.String(), "container not adopted"); c.adopted == 0 && refusals != 1 {
			t.Errorf("uuid ids: %d log lines refusing the adoption, want one over two scans:\n%s", refusals, logs.String())
		}
	}
}
