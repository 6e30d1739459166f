package cleanup_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// The platform's tables as the platform may really have them: ids kept as
// text, settings as key/value rows, an event_log with columns of its own.
const textIDPlatform = `
CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE stages (id text PRIMARY KEY, project_id text NOT NULL, name text NOT NULL);
CREATE TABLE instances (
    id text PRIMARY KEY, stage_id text NOT NULL, project_id text NOT NULL,
    container_id text, image_tag text, subdomain text, npm_proxy_id integer, status text NOT NULL DEFAULT 'stopped',
    port integer, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO settings VALUES ('stale_threshold_days', '1'), ('theme', 'dark');
`

func TestPlatformShapes(t *testing.T) {
	for _, c := range []struct {
		name, events string
		eventTable   string
	}{
		{"text ids, key/value settings, event_log with extra nullable columns",
			`CREATE TABLE event_log (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), severity text NOT NULL,
				source text NOT NULL, message text NOT NULL, project_id text, instance_id text, user_id text, details jsonb);`, "event_log"},
		{"text ids, key/value settings, event_log requiring a column this service cannot fill",
			`CREATE TABLE event_log (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), severity text NOT NULL,
				source text NOT NULL, message text NOT NULL, actor text NOT NULL);`, "stale_exporter_events"},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := storetest.NewShaped(t, textIDPlatform+c.events)
			shape := db.Store.Shape()
			if shape.IDTypes["instances"] != "text" || !shape.SettingsKeyValue || shape.EventTable != c.eventTable {
				t.Fatalf("shape: %+v", shape)
			}
			if days, err := db.Store.ThresholdDays(context.Background()); err != nil || days != 1 {
				t.Fatalf("threshold from the key/value row: %d %v", days, err)
			}
			e := newEnv(t, envOptions{db: db, storeThreshold: true, now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
			projectID, stageID := newUUID(t, db), newUUID(t, db)
			db.Exec(t, "INSERT INTO projects (id, name) VALUES ($1, 'shop')", projectID)
			db.Exec(t, "INSERT INTO stages (id, project_id, name) VALUES ($1, $2, 'preview')", stageID, projectID)
			add := func(start bool) (string, string) {
				id := newUUID(t, db)
				cid := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: start})
				db.Exec(t, `INSERT INTO instances (id, stage_id, project_id, container_id, image_tag, created_at)
					VALUES ($1, $2, $3, $4, 'pr-1', now() - interval '10 days')`, id, stageID, projectID, cid)
				return id, cid
			}
			for range 3 {
				add(true)
			}
			staleID, staleCID := add(false)

			r := e.scanner.Rescan(context.Background())
			if !r.Success || r.Snapshot.StaleCount() != 1 {
				t.Fatalf("scan: success=%v stale=%d err=%v", r.Success, r.Snapshot.StaleCount(), r.Err)
			}
			if res := e.do(http.MethodPost, "/api/containers/stale/"+staleID+"/cleanup", auth.RoleOperator, "", nil); res.status != http.StatusOK {
				t.Fatalf("REST cleanup: %d %s", res.status, res.Error)
			}
			res := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(staleID, staleCID, true, time.Now())))
			if res.status != http.StatusOK {
				t.Fatalf("webhook: %d %s", res.status, res.Error)
			}
			if e.containerExists(staleCID) || e.instanceExists(staleID) {
				t.Fatal("the stale instance was not removed")
			}
			if n := db.Count(t, "SELECT count(*) FROM "+c.eventTable+" WHERE message LIKE 'removed %' AND instance_id::text = $1", staleID); n != 1 {
				t.Fatalf("removal events in %s: %d, want 1", c.eventTable, n)
			}
			if n := db.Count(t, "SELECT count(*) FROM "+c.eventTable+" WHERE severity = 'warning'"); n != 1 {
				t.Fatalf("warnings in %s: %d, want 1", c.eventTable, n)
			}
			if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE result = $1", store.ResultRemoved); n != 1 {
				t.Fatalf("removed jobs: %d", n)
			}
		})
	}
}

func newUUID(t *testing.T, db *storetest.DB) string {
	t.Helper()
	var id string
	if err := db.Pool.QueryRow(context.Background(), "SELECT gen_random_uuid()::text").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// A platform table that does not fit is refused at start with one line
// naming the table and column.
func TestPreflightNamesWhatDoesNotFit(t *testing.T) {
	for sql, want := range map[string]string{
		strings.Replace(textIDPlatform, "status text NOT NULL DEFAULT 'stopped',", "", 1): "table instances has no column status",
		strings.Replace(textIDPlatform, "CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);\nINSERT INTO settings VALUES ('stale_threshold_days', '1'), ('theme', 'dark');", "CREATE TABLE settings (key text PRIMARY KEY, val text);", 1): "table settings has no column stale_threshold_days and no key/value columns",
		strings.Replace(textIDPlatform, "CREATE TABLE projects (id text PRIMARY KEY", "CREATE TABLE projects (id integer PRIMARY KEY", 1):                                                                                                                  "projects.id is integer",
	} {
		dsn := testenv.Database(t)
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(context.Background(), sql)
		conn.Close(context.Background())
		if err != nil {
			t.Fatalf("create tables: %v", err)
		}
		st, err := store.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		err = st.Migrate(context.Background())
		st.Close()
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("migrate: %v, want one line with %q", err, want)
		}
	}
}
