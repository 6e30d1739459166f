package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/api/apitest"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Every documented operation answers every status it documents, each
// answer as the document says (Do checks them), and the document served
// is the one checked against.
func TestOpenAPI(t *testing.T) {
	contract, err := apitest.LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	snap := &stale.Snapshot{ScannedAt: now, Observations: []stale.Observation{{
		Instance:  stale.Instance{ID: "i1", ContainerID: strings.Repeat("a", 64), ProjectName: "shop", StageName: "prod", ImageTag: "t"},
		Container: stale.Container{Found: true, State: "exited"},
		Verdict:   stale.Verdict{Stale: true, LastAlive: now.Add(-48 * time.Hour)},
	}}}
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: snap}, Contract: contract})
	const single, bulk, keep, hook = "/api/containers/stale/i1/cleanup", "/api/containers/stale/cleanup", "/api/containers/stale/i1/keep", "/api/alertmanager/webhook"
	const js, keepBody, alert = "application/json", `{"until":"forever","reason":"a demo"}`, `{"status":"firing","labels":{"alertname":"StaleContainer","instance_id":"i1","action":"cleanup"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f1"}`
	big := `{"x":"` + strings.Repeat("a", 70<<10) + `"}`
	pending := func(apitest.Request) (store.Job, error) {
		return store.Job{ID: 7, InstanceID: "i1", Trigger: store.TriggerSingle, State: store.JobPending, Reason: "retrying in 1s"}, nil
	}
	running := func(apitest.Request) (store.Job, error) {
		return store.Job{ID: 8, InstanceID: "i1", Trigger: store.TriggerSingle, State: store.JobDone, Result: store.ResultSkipped, Code: string(cleanup.CodeRunning), Reason: "container is running"}, nil
	}
	unknown := func(apitest.Request) (store.Job, error) { return store.Job{}, cleanup.ErrUnknownInstance }
	down := func(apitest.Request) (store.Job, error) { return store.Job{}, apitest.ErrStore }
	for _, c := range []struct {
		method, path string
		role         auth.Role
		ct, body     string
		job          func(apitest.Request) (store.Job, error)
		fail         bool // the store does not answer
		want         int
	}{
		{"GET", "/api/containers/stale?project=shop&limit=1", auth.RoleViewer, "", "", nil, false, 200},
		{"GET", "/api/containers/stale?limit=0", auth.RoleViewer, "", "", nil, false, 400},
		{"GET", "/api/containers/stale", "", "", "", nil, false, 401},
		{"GET", "/api/containers/stale", auth.RoleAlertmanager, "", "", nil, false, 403},
		{"POST", single, auth.RoleOperator, js, `{"dry_run":true}`, nil, false, 200},
		{"POST", single, auth.RoleOperator, "", "", pending, false, 202},
		{"POST", single + "?dry_run=maybe", auth.RoleOperator, "", "", nil, false, 400},
		{"POST", single, "", "", "", nil, false, 401},
		{"POST", single, auth.RoleViewer, "", "", nil, false, 403},
		{"POST", single, auth.RoleOperator, "", "", unknown, false, 404},
		{"POST", single, auth.RoleOperator, "", "", running, false, 409},
		{"POST", single, auth.RoleOperator, js, big, nil, false, 413},
		{"POST", single, auth.RoleOperator, "", "", down, false, 503},
		{"POST", bulk, auth.RoleAdmin, js, `{"dry_run":true,"max":2}`, nil, false, 200},
		{"POST", bulk, auth.RoleAdmin, js, `{"max":-1}`, nil, false, 400},
		{"POST", bulk, "", "", "", nil, false, 401},
		{"POST", bulk, auth.RoleOperator, "", "", nil, false, 403},
		{"POST", bulk, auth.RoleAdmin, js, big, nil, false, 413},
		{"POST", bulk, auth.RoleAdmin, "", "", down, false, 503},
		{"POST", keep, auth.RoleOperator, js, keepBody, nil, false, 200},
		{"POST", keep, auth.RoleOperator, js, `{"until":"yesterday","reason":"x"}`, nil, false, 400},
		{"POST", keep, "", js, keepBody, nil, false, 401},
		{"POST", keep, auth.RoleViewer, js, keepBody, nil, false, 403},
		{"POST", "/api/containers/stale/unknown/keep", auth.RoleOperator, js, keepBody, nil, false, 404},
		{"POST", keep, auth.RoleOperator, js, big, nil, false, 413},
		{"POST", keep, auth.RoleOperator, js, keepBody, nil, true, 503},
		{"DELETE", keep, auth.RoleOperator, "", "", nil, false, 200},
		{"DELETE", keep + "?x=1", auth.RoleOperator, "", "", nil, false, 400},
		{"DELETE", keep, "", "", "", nil, false, 401},
		{"DELETE", keep, auth.RoleViewer, "", "", nil, false, 403},
		{"DELETE", keep, auth.RoleOperator, "", "", nil, false, 404}, // lifted above
		{"DELETE", keep, auth.RoleOperator, "", "", nil, true, 503},
		{"POST", hook, auth.RoleAlertmanager, js, `{"version":"4","status":"firing","alerts":[` + alert + `]}`, nil, false, 200},
		{"POST", hook, auth.RoleAlertmanager, js, `{"alerts":"x"}`, nil, false, 400},
		{"POST", hook, "", js, `{"alerts":[]}`, nil, false, 401},
		{"POST", hook, auth.RoleAdmin, js, `{"alerts":[]}`, nil, false, 403},
		{"POST", hook, auth.RoleAlertmanager, js, big, nil, false, 413},
		{"GET", "/api/cleanups?limit=5", auth.RoleViewer, "", "", nil, false, 200},
		{"GET", "/api/cleanups?limit=0", auth.RoleViewer, "", "", nil, false, 400},
		{"GET", "/api/cleanups", "", "", "", nil, false, 401},
		{"GET", "/api/cleanups", auth.RoleAlertmanager, "", "", nil, false, 403},
		{"GET", "/api/cleanups", auth.RoleViewer, "", "", down, false, 503},
		{"GET", "/api/cleanups/1", auth.RoleViewer, "", "", nil, false, 200},
		{"GET", "/api/cleanups/one", auth.RoleViewer, "", "", nil, false, 400},
		{"GET", "/api/cleanups/1", "", "", "", nil, false, 401},
		{"GET", "/api/cleanups/1", auth.RoleAlertmanager, "", "", nil, false, 403},
		{"GET", "/api/cleanups/99", auth.RoleViewer, "", "", nil, false, 404},
		{"GET", "/api/cleanups/1", auth.RoleViewer, "", "", nil, true, 503},
		{"GET", "/api/engines", auth.RoleViewer, "", "", nil, false, 200},
		{"GET", "/api/engines?x=1", auth.RoleViewer, "", "", nil, false, 400},
		{"GET", "/api/engines", "", "", "", nil, false, 401},
		{"GET", "/api/engines", auth.RoleAlertmanager, "", "", nil, false, 403},
		{"DELETE", "/api/engines/host-a?x=1", auth.RoleAdmin, "", "", nil, false, 400},
		{"DELETE", "/api/engines/host-a", "", "", "", nil, false, 401},
		{"DELETE", "/api/engines/host-a", auth.RoleOperator, "", "", nil, false, 403},
		{"DELETE", "/api/engines/host-a", auth.RoleAdmin, "", "", nil, false, 200},
		{"DELETE", "/api/engines/host-a", auth.RoleAdmin, "", "", nil, false, 404}, // forgotten above
		{"POST", "/-/reload", auth.RoleAdmin, "", "", nil, false, 200},
		{"POST", "/-/reload", "", "", "", nil, false, 401},
		{"POST", "/-/reload", auth.RoleOperator, "", "", nil, false, 403},
	} {
		s.Cleaner.Job = c.job
		s.Cleaner.Err = nil
		if c.fail {
			s.Cleaner.Err = apitest.ErrStore
		}
		if a := s.Do(c.method, c.path, c.role, c.ct, c.body); a.Status != c.want {
			t.Errorf("%s %s as %q: %d %s %q, want %d", c.method, c.path, c.role, a.Status, a.Code, a.Error, c.want)
		}
	}
	s.Cleaner.Job, s.Cleaner.Err = nil, nil

	// The store down, for the parts that are not the cleanup service.
	s.Cleaner.Alert = func(cleanup.Alert) (cleanup.AlertOutcome, error) { return cleanup.AlertOutcome{}, apitest.ErrStore }
	s.Do("POST", hook, auth.RoleAlertmanager, js, `{"alerts":[`+alert+`]}`)
	s.Engines.Err = apitest.ErrStore
	s.Do("GET", "/api/engines", auth.RoleViewer, "", "")
	s.Do("DELETE", "/api/engines/host-a", auth.RoleAdmin, "", "")
	s.Scans.Set(scan.Result{Err: apitest.ErrStore})
	s.Do("GET", "/api/containers/stale", auth.RoleViewer, "", "")

	// A tokens file that no longer loads.
	if err := os.WriteFile(s.TokensFile, []byte("tokens: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Do("POST", "/-/reload", auth.RoleAdmin, "", "")

	// The document itself, served without a token.
	res, raw := s.Raw("GET", "/api/openapi.json", "", "", "")
	if res.StatusCode != 200 || string(raw) != string(api.OpenAPI) {
		t.Errorf("GET /api/openapi.json: %d, %d bytes, want the embedded document", res.StatusCode, len(raw))
	}

	// While the exporter starts, every operation answers a 503 as
	// documented.
	starting := httptest.NewServer(api.Starting(func() string { return "starting: waiting for PostgreSQL" }, http.NotFoundHandler()))
	defer starting.Close()
	for path, item := range contract.Doc.Paths.Map() {
		if path == "/api/openapi.json" {
			continue
		}
		for method := range item.Operations() {
			req, _ := http.NewRequest(method, starting.URL+strings.NewReplacer("{id}", "i1", "{job}", "1", "{name}", "host-a").Replace(path), nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if found, err := contract.Check(req, res.StatusCode, res.Header, body); !found || err != nil || res.StatusCode != 503 {
				t.Errorf("starting, %s %s: %d (documented operation %v): %v", method, path, res.StatusCode, found, err)
			}
		}
	}

	if unseen := contract.Unseen(); len(unseen) > 0 {
		sort.Strings(unseen)
		t.Errorf("documented answers no test checked:\n%s", strings.Join(unseen, "\n"))
	}
}

// The document checked is the one in the repository, and it is valid
// OpenAPI 3 (LoadContract validates it).
func TestOpenAPIDocumentIsCommitted(t *testing.T) {
	onDisk, err := os.ReadFile(filepath.Join(".", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(api.OpenAPI) {
		t.Fatal("the embedded document is not openapi.json")
	}
}
