package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
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

const webhookBody = `{"version":"4","status":"firing","alerts":[]}`

// Every endpoint admits exactly its roles, answers 401 with a challenge and
// never reads the body of a request it refuses; refusals are counted.
func TestAuth(t *testing.T) {
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	single := "/api/containers/stale/i1/cleanup?dry_run=true"
	bulk := "/api/containers/stale/cleanup?dry_run=true"
	for _, c := range []struct {
		name, method, path string
		role               auth.Role
		want               int
	}{
		{"no token", http.MethodPost, single, "", http.StatusUnauthorized},
		{"list without token", http.MethodGet, "/api/containers/stale", "", http.StatusUnauthorized},
		{"viewer lists", http.MethodGet, "/api/containers/stale", auth.RoleViewer, http.StatusOK},
		{"viewer reads audit", http.MethodGet, "/api/cleanups", auth.RoleViewer, http.StatusOK},
		{"viewer reads engines", http.MethodGet, "/api/engines", auth.RoleViewer, http.StatusOK},
		{"viewer cleans", http.MethodPost, single, auth.RoleViewer, http.StatusForbidden},
		{"operator cleans one", http.MethodPost, single, auth.RoleOperator, http.StatusOK},
		{"operator bulk", http.MethodPost, bulk, auth.RoleOperator, http.StatusForbidden},
		{"operator forgets an engine", http.MethodDelete, "/api/engines/host-a", auth.RoleOperator, http.StatusForbidden},
		{"admin bulk", http.MethodPost, bulk, auth.RoleAdmin, http.StatusOK},
		{"alertmanager cleans one", http.MethodPost, single, auth.RoleAlertmanager, http.StatusForbidden},
		{"alertmanager bulk", http.MethodPost, bulk, auth.RoleAlertmanager, http.StatusForbidden},
		{"alertmanager lists", http.MethodGet, "/api/containers/stale", auth.RoleAlertmanager, http.StatusForbidden},
		{"admin webhook", http.MethodPost, "/api/alertmanager/webhook", auth.RoleAdmin, http.StatusForbidden},
		{"alertmanager webhook", http.MethodPost, "/api/alertmanager/webhook", auth.RoleAlertmanager, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, ct := "", ""
			if strings.HasSuffix(c.path, "/webhook") {
				body, ct = webhookBody, "application/json"
			}
			a := s.Do(c.method, c.path, c.role, ct, body)
			if a.Status != c.want {
				t.Fatalf("%d %q, want %d", a.Status, a.Error, c.want)
			}
			if c.want == http.StatusUnauthorized && a.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if c.want >= 400 && !a.Closed {
				t.Error("a refused request's connection is kept: its body would be drained")
			}
		})
	}
	for _, h := range []string{"Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+single, nil)
		req.Header.Set("Authorization", h)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", h, res.StatusCode)
		}
	}
	for _, r := range s.Cleaner.Asked() {
		if !r.DryRun {
			t.Fatalf("a removal was asked: %+v", r)
		}
	}
	for labels, want := range map[[2]string]float64{
		{"cleanup_single", "401"}: 4, {"cleanup_single", "403"}: 2, {"cleanup_bulk", "403"}: 2, {"webhook", "403"}: 1, {"forget_engine", "403"}: 1,
	} {
		if v := s.Counter("stale_exporter_api_requests_total", map[string]string{"endpoint": labels[0], "code": labels[1]}); v != want {
			t.Errorf("stale_exporter_api_requests_total%v = %v, want %v", labels, v, want)
		}
	}
}

// A 403 names the caller's token and the role needed, nothing more.
func TestForbiddenSaysLittle(t *testing.T) {
	s := apitest.New(t, apitest.Options{})
	a := s.Do(http.MethodPost, "/api/containers/stale/cleanup", auth.RoleViewer, "", "")
	if a.Status != http.StatusForbidden || a.Error != `token "test-viewer" may not call this endpoint, which needs the role admin` {
		t.Fatalf("403: %d %q", a.Status, a.Error)
	}
}

// Without a tokens file the mutating endpoints are closed, not open.
func TestNoTokensFileClosesMutatingEndpoints(t *testing.T) {
	s := apitest.New(t, apitest.Options{NoTokens: true, Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/api/containers/stale/i1/cleanup"}, {http.MethodPost, "/api/containers/stale/cleanup"},
		{http.MethodPost, "/api/alertmanager/webhook"}, {http.MethodDelete, "/api/engines/host-a"},
	} {
		if a := s.Do(c.method, c.path, "", "application/json", webhookBody); a.Status != http.StatusForbidden || !strings.Contains(a.Error, "tokens file") {
			t.Errorf("%s %s: %d %q, want 403 naming the tokens file", c.method, c.path, a.Status, a.Error)
		}
	}
	if a := s.Do(http.MethodGet, "/api/containers/stale", "", "", ""); a.Status != http.StatusOK {
		t.Errorf("list without tokens file: %d", a.Status)
	}
	if len(s.Cleaner.Asked()) != 0 || len(s.Cleaner.Alerts) != 0 {
		t.Fatal("a closed endpoint reached the cleanup service")
	}
}

// Bad input is a 400 (413 for too large) with a clear message, and reaches
// nothing behind the API.
func TestBadInput(t *testing.T) {
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	alert := `{"status":"firing","labels":{"alertname":"StaleContainer","instance_id":"i1","action":"cleanup"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f1"}`
	const single, bulk, hook = "/api/containers/stale/i1/cleanup", "/api/containers/stale/cleanup", "/api/alertmanager/webhook"
	for _, c := range []struct {
		name, method, path string
		role               auth.Role
		contentType, body  string
		want               int
		errorHas           string
	}{
		{"id with a space", http.MethodPost, "/api/containers/stale/not%20an%20id/cleanup", auth.RoleOperator, "", "", 400, "holds a space"},
		{"id too long", http.MethodPost, "/api/containers/stale/" + strings.Repeat("x", 129) + "/cleanup", auth.RoleOperator, "", "", 400, "at most 128"},
		{"bad dry_run", http.MethodPost, single + "?dry_run=maybe", auth.RoleOperator, "", "", 400, "dry_run"},
		{"dry_run without a value", http.MethodPost, single + "?dry_run", auth.RoleOperator, "", "", 400, "no value"},
		{"dry_run twice", http.MethodPost, single + "?dry_run=false&dry_run=true", auth.RoleOperator, "", "", 400, "2 times"},
		{"DRY_RUN", http.MethodPost, single + "?DRY_RUN=true", auth.RoleOperator, "", "", 400, "unknown query parameter"},
		{"dry-run", http.MethodPost, single + "?dry-run=true", auth.RoleOperator, "", "", 400, "unknown query parameter"},
		{"body and query disagree", http.MethodPost, single + "?dry_run=false", auth.RoleOperator, "application/json", `{"dry_run":true}`, 400, "say it once"},
		{"single body not JSON", http.MethodPost, single, auth.RoleOperator, "text/plain", `{"dry_run":true}`, 400, "Content-Type"},
		{"single body without a type", http.MethodPost, single, auth.RoleOperator, "", `{"dry_run":true}`, 400, "Content-Type"},
		{"bulk wrong content type", http.MethodPost, bulk, auth.RoleAdmin, "text/plain", `{}`, 400, "Content-Type"},
		{"bulk malformed JSON", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"max":`, 400, "malformed"},
		{"bulk unknown field", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"dryrun":true}`, 400, "unknown field"},
		{"bulk negative max", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"max":-1}`, 400, "negative"},
		{"bulk over cap", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"max":100000}`, 400, "cap"},
		{"bulk keys in two cases", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"dry_run":true,"DRY_RUN":false}`, 400, "differ only in case"},
		{"bulk duplicate dry_run", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"dry_run":true,"dry_run":false,"max":1}`, 400, "appears twice"},
		{"bulk null dry_run", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"dry_run":null}`, 400, "null"},
		{"bulk dry_run as string", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"dry_run":"false"}`, 400, "cannot unmarshal"},
		{"bulk max huge", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"max":1e30}`, 400, "cannot unmarshal"},
		{"bulk trailing data", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"dry_run":true} {"dry_run":false}`, 400, "trailing"},
		{"bulk deeply nested", http.MethodPost, bulk, auth.RoleAdmin, "application/json", strings.Repeat("[", 100) + strings.Repeat("]", 100), 400, "nested"},
		{"bulk too large", http.MethodPost, bulk, auth.RoleAdmin, "application/json", `{"max":1,"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger"},
		{"webhook wrong content type", http.MethodPost, hook, auth.RoleAlertmanager, "text/plain", `{"alerts":[]}`, 400, "Content-Type"},
		{"webhook empty", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", ``, 400, "malformed"},
		{"webhook malformed JSON", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", `{"alerts":[`, 400, "malformed"},
		{"webhook alerts not a list", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", `{"alerts":"x"}`, 400, "malformed"},
		{"webhook no alerts field", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", `{"status":"firing"}`, 400, "no alerts"},
		{"webhook alerts twice", hook + "", hook, auth.RoleAlertmanager, "application/json", `{"alerts":[], "alerts":[` + alert + `]}`, 400, "appears twice"},
		{"webhook status in two cases", http.MethodPost, hook, auth.RoleAlertmanager, "application/json",
			`{"alerts":[{"status":"resolved","Status":"firing","labels":{}}]}`, 400, "differ only in case"},
		{"webhook Labels", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", `{"alerts":[{"Labels":{"action":"cleanup"}}]}`, 400, "case-sensitive"},
		{"webhook truncated past the bound", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", `{"alerts":[],"truncatedAlerts":18446744073709551615}`, 400, "truncatedAlerts"},
		{"webhook with a query", http.MethodPost, hook + "?x=1", auth.RoleAlertmanager, "application/json", `{"alerts":[]}`, 400, "unknown query parameter"},
		{"webhook too large", http.MethodPost, hook, auth.RoleAlertmanager, "application/json", `{"alerts":[],"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger"},
		{"unknown API path", http.MethodGet, "/api/nothing", auth.RoleViewer, "", "", 404, "no such endpoint"},
		{"unknown POST under stale", http.MethodPost, "/api/containers/stale/i1", auth.RoleAdmin, "", "", 404, "no such endpoint"},
		{"unknown POST deep under stale", http.MethodPost, "/api/containers/stale/i1/cleanup/x", auth.RoleAdmin, "", "", 404, "no such endpoint"},
		{"wrong method", http.MethodDelete, "/api/containers/stale", auth.RoleViewer, "", "", 405, "not allowed"},
		{"bad limit", http.MethodGet, "/api/cleanups?limit=0", auth.RoleViewer, "", "", 400, "limit"},
		{"limit twice", http.MethodGet, "/api/cleanups?limit=1&limit=2", auth.RoleViewer, "", "", 400, "2 times"},
		{"list with an unknown parameter", http.MethodGet, "/api/containers/stale?x=1", auth.RoleViewer, "", "", 400, "takes project, stage, limit, cursor"},
		{"list with Project", http.MethodGet, "/api/containers/stale?Project=shop", auth.RoleViewer, "", "", 400, `unknown query parameter "Project"`},
		{"list limit 0", http.MethodGet, "/api/containers/stale?limit=0", auth.RoleViewer, "", "", 400, "limit must be a number from 1 to 5000"},
		{"list limit huge", http.MethodGet, "/api/containers/stale?limit=99999999999999999999", auth.RoleViewer, "", "", 400, "limit must be"},
		{"list limit twice", http.MethodGet, "/api/containers/stale?limit=1&limit=2", auth.RoleViewer, "", "", 400, "given 2 times"},
		{"list forged cursor", http.MethodGet, "/api/containers/stale?cursor=bm9wZQ", auth.RoleViewer, "", "", 400, "not one this API gave"},
	} {
		if c.method == hook {
			c.method = http.MethodPost
		}
		t.Run(c.name, func(t *testing.T) {
			a := s.Do(c.method, c.path, c.role, c.contentType, c.body)
			if a.Status != c.want || !strings.Contains(a.Error, c.errorHas) {
				t.Fatalf("%d %q, want %d with %q", a.Status, a.Error, c.want, c.errorHas)
			}
		})
	}
	if len(s.Cleaner.Asked()) != 0 || len(s.Cleaner.Alerts) != 0 {
		t.Fatalf("bad input reached the cleanup service: %+v", s.Cleaner.Asked())
	}
}

// The dry run a request says, in any of its accepted ways, is the dry run
// the service is asked for; a plain request asks for a real one.
func TestDryRunReachesTheService(t *testing.T) {
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	for _, c := range []struct {
		path, contentType, body string
		dryRun                  bool
	}{
		{"/api/containers/stale/i1/cleanup", "", "", false},
		{"/api/containers/stale/i1/cleanup?dry_run=true", "", "", true},
		{"/api/containers/stale/i1/cleanup?dry_run=1", "", "", true},
		{"/api/containers/stale/i1/cleanup", "application/json", `{"dry_run":true}`, true},
		{"/api/containers/stale/i1/cleanup?dry_run=true", "application/json", `{"dry_run":true}`, true},
		{"/api/containers/stale/i1/cleanup", "application/json", `{"dry_run":false}`, false},
		{"/api/containers/stale/cleanup", "application/json", `{"dry_run":true}`, true},
		{"/api/containers/stale/cleanup?dry_run=true", "", "", true},
	} {
		before := len(s.Cleaner.Asked())
		role := auth.RoleOperator
		if strings.HasSuffix(c.path, "stale/cleanup") || strings.Contains(c.path, "stale/cleanup?") {
			role = auth.RoleAdmin
		}
		if a := s.Do(http.MethodPost, c.path, role, c.contentType, c.body); a.Status != http.StatusOK {
			t.Fatalf("%s %s: %d %q", c.path, c.body, a.Status, a.Error)
		}
		asked := s.Cleaner.Asked()
		if len(asked) != before+1 || asked[before].DryRun != c.dryRun {
			t.Errorf("%s %s: asked %+v, want dry run %v", c.path, c.body, asked[before:], c.dryRun)
		}
	}
}

// The bulk route and the per-instance one are told apart by the path, not
// by an id parameter: an instance whose id is "cleanup" is cleaned alone.
func TestContainerRoutes(t *testing.T) {
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	s.Do(http.MethodPost, "/api/containers/stale/cleanup/cleanup", auth.RoleOperator, "", "")
	s.Do(http.MethodPost, "/api/containers/stale/cleanup", auth.RoleAdmin, "", "")
	asked := s.Cleaner.Asked()
	if len(asked) != 2 || asked[0].ID != "cleanup" || asked[0].Trigger != store.TriggerSingle || asked[1].Trigger != store.TriggerBulk {
		t.Fatalf("asked %+v, want the single cleanup of instance cleanup, then a bulk one", asked)
	}
}

// Each job outcome has its status: never a 500.
func TestJobOutcomesAndStatuses(t *testing.T) {
	s := apitest.New(t, apitest.Options{})
	for _, c := range []struct {
		job  store.Job
		err  error
		want int
		code string
	}{
		{store.Job{ID: 1, Trigger: store.TriggerSingle, State: store.JobDone, Result: store.ResultRemoved}, nil, http.StatusOK, ""},
		{store.Job{ID: 1, Trigger: store.TriggerSingle, State: store.JobPending, Reason: "retrying in 1s"}, nil, http.StatusAccepted, ""},
		{store.Job{ID: 1, Trigger: store.TriggerSingle, State: store.JobDone, Result: store.ResultSkipped, Code: string(cleanup.CodeRunning), Reason: "container is running"}, nil,
			http.StatusConflict, string(cleanup.CodeRunning)},
		{store.Job{ID: 1, Trigger: store.TriggerSingle, State: store.JobDone, Result: store.ResultFailed, Code: string(cleanup.CodeUnavailable), Reason: "inspect container: EOF"}, nil,
			http.StatusServiceUnavailable, string(cleanup.CodeUnavailable)},
		{store.Job{}, cleanup.ErrUnknownInstance, http.StatusNotFound, "not_found"},
		{store.Job{}, apitest.ErrStore, http.StatusServiceUnavailable, "unavailable"},
		{store.Job{}, &cleanup.TimeoutError{Op: "request", Limit: time.Second, Waited: 28 * time.Second, Err: apitest.ErrStore}, http.StatusServiceUnavailable, "timeout"},
	} {
		s.Cleaner.Job = func(apitest.Request) (store.Job, error) { return c.job, c.err }
		a := s.Do(http.MethodPost, "/api/containers/stale/i1/cleanup", auth.RoleOperator, "", "")
		if a.Status != c.want || a.Code != c.code {
			t.Errorf("job %+v, %v: %d %s %q, want %d %s", c.job, c.err, a.Status, a.Code, a.Error, c.want, c.code)
		}
		if c.code == "timeout" && !strings.Contains(a.Error, "waited 28s") {
			t.Errorf("a timeout does not say how long it waited: %q", a.Error)
		}
		if loc := a.Header.Get("Location"); (a.Status == http.StatusAccepted) != (loc == "/api/cleanups/1") {
			t.Errorf("job %+v answered %d with Location %q: a 202, and only a 202, names its job", c.job, a.Status, loc)
		}
	}
	s.Cleaner.Job = func(apitest.Request) (store.Job, error) { return store.Job{}, apitest.ErrStore }
	if a := s.Do(http.MethodGet, "/api/cleanups", auth.RoleViewer, "", ""); a.Status != http.StatusServiceUnavailable {
		t.Errorf("list cleanups with the store down: %d", a.Status)
	}
	if a := s.Do(http.MethodPost, "/api/containers/stale/cleanup", auth.RoleAdmin, "", ""); a.Status != http.StatusServiceUnavailable {
		t.Errorf("bulk with the store down: %d", a.Status)
	}
}

// Every answer under /api is the JSON envelope: odd slashes, OPTIONS and
// /api itself included (do fails the test on anything else).
func TestEveryAPIAnswerIsJSON(t *testing.T) {
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/api/containers/stale/", http.StatusMethodNotAllowed}, // POST lives under it
		{http.MethodGet, "/api//containers/stale", http.StatusNotFound},
		{http.MethodGet, "/api/cleanups/", http.StatusNotFound},
		{http.MethodGet, "/api", http.StatusNotFound},
		{http.MethodGet, "/api/", http.StatusNotFound},
		{http.MethodOptions, "/api/containers/stale", http.StatusOK},
		{http.MethodOptions, "/api/alertmanager/webhook", http.StatusOK},
		{http.MethodPut, "/api/cleanups", http.StatusMethodNotAllowed},
	} {
		if a := s.Do(c.method, c.path, auth.RoleViewer, "", ""); a.Status != c.want {
			t.Errorf("%s %s: %d %q, want %d", c.method, c.path, a.Status, a.Error, c.want)
		}
	}
	if a := s.Do(http.MethodOptions, "/api/cleanups", auth.RoleViewer, "", ""); !strings.Contains(string(a.Data), `"GET"`) {
		t.Errorf("OPTIONS lists no methods: %s", a.Data)
	}
}

// The list shows each stale instance of the latest scan, longest stale
// first; without a recent scan it answers 503.
func TestListStale(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	obs := func(id string, daysAgo float64, isStale bool) stale.Observation {
		return stale.Observation{Instance: stale.Instance{ID: id, ContainerID: "c-" + id, ProjectName: "shop", StageName: "preview", ImageTag: "t"},
			Container: stale.Container{Found: true, State: "exited"},
			Verdict:   stale.Verdict{Stale: isStale, LastAlive: now.Add(-time.Duration(daysAgo * 24 * float64(time.Hour)))}}
	}
	snap := &stale.Snapshot{ScannedAt: now, Observations: []stale.Observation{obs("a", 2, true), obs("b", 9.5, true), obs("c", 30, false)}}
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: snap}})
	a := s.Do(http.MethodGet, "/api/containers/stale", auth.RoleViewer, "", "")
	var rows []api.StaleContainer
	if err := json.Unmarshal(a.Data, &rows); err != nil || len(rows) != 2 {
		t.Fatalf("list: %s %v", a.Data, err)
	}
	if rows[0].InstanceID != "b" || rows[0].DaysSinceLastAlive != 9.5 || rows[0].LastAlive != "2026-11-13T23:59:59Z" && rows[0].LastAlive != "2026-11-14T00:00:00Z" ||
		rows[1].InstanceID != "a" || rows[1].DockerState != "exited" || rows[1].ContainerID != "c-a" {
		t.Fatalf("rows: %+v", rows)
	}
	none := apitest.New(t, apitest.Options{Scan: scan.Result{Err: fmt.Errorf("list containers: %w", apitest.ErrStore)}})
	if a := none.Do(http.MethodGet, "/api/containers/stale", auth.RoleViewer, "", ""); a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Error, "no recent successful scan") {
		t.Fatalf("without a scan: %d %q", a.Status, a.Error)
	}
}

// The webhook hands each alert to the service in the domain's terms, one
// outcome per alert; an alert the store failed makes it 503, so that
// Alertmanager retries; truncated alerts are counted.
func TestWebhook(t *testing.T) {
	s := apitest.New(t, apitest.Options{})
	s.Cleaner.Alert = func(a cleanup.Alert) (cleanup.AlertOutcome, error) {
		if a.Labels["fail"] == "yes" {
			return cleanup.AlertOutcome{Fingerprint: a.Fingerprint}, apitest.ErrStore
		}
		return cleanup.AlertOutcome{Fingerprint: a.Fingerprint, Status: a.Status, Result: cleanup.AlertRecorded}, nil
	}
	body := `{"truncatedAlerts":3,"alerts":[
		{"status":"firing","labels":{"alertname":"StaleContainer","instance_id":"i1"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"abc"},
		{"status":"firing","labels":{"alertname":"StaleContainer","instance_id":"i2"},"startsAt":"2026-01-01T00:00:00Z"}]}`
	a := s.Do(http.MethodPost, "/api/alertmanager/webhook", auth.RoleAlertmanager, "application/json", body)
	var out struct {
		Alerts []struct{ Fingerprint, Result string }
	}
	if err := json.Unmarshal(a.Data, &out); err != nil || a.Status != http.StatusOK || len(out.Alerts) != 2 {
		t.Fatalf("webhook: %d %s %v", a.Status, a.Data, err)
	}
	got := s.Cleaner.Alerts
	if got[0].Fingerprint != "abc" || got[1].Fingerprint == "" || got[1].Labels["instance_id"] != "i2" || got[0].StartsAt.Year() != 2026 {
		t.Fatalf("alerts handed on: %+v (an alert without a fingerprint gets its labels' one)", got)
	}
	if v := s.Counter("stale_exporter_webhook_truncated_alerts_total", nil); v != 3 {
		t.Errorf("truncated alerts counted %v, want 3", v)
	}
	a = s.Do(http.MethodPost, "/api/alertmanager/webhook", auth.RoleAlertmanager, "application/json",
		`{"alerts":[{"status":"firing","labels":{"fail":"yes"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f"}]}`)
	if a.Status != http.StatusServiceUnavailable || !strings.Contains(string(a.Data), `"result":"error"`) {
		t.Fatalf("store failed: %d %s", a.Status, a.Data)
	}
	if v := s.Counter("stale_exporter_webhook_alerts_total", map[string]string{"result": cleanup.AlertError}); v != 1 {
		t.Errorf("webhook_alerts_total{result=error} = %v, want 1", v)
	}
}

// Engines are listed for viewers and forgotten by admins, by name.
func TestEngines(t *testing.T) {
	s := apitest.New(t, apitest.Options{})
	a := s.Do(http.MethodGet, "/api/engines", auth.RoleViewer, "", "")
	if a.Status != http.StatusOK || !strings.Contains(string(a.Data), `"name":"host-a"`) {
		t.Fatalf("list: %d %s", a.Status, a.Data)
	}
	if a := s.Do(http.MethodDelete, "/api/engines/host-z", auth.RoleAdmin, "", ""); a.Status != http.StatusNotFound {
		t.Fatalf("forget an unknown engine: %d", a.Status)
	}
	if a := s.Do(http.MethodDelete, "/api/engines/host-a", auth.RoleAdmin, "", ""); a.Status != http.StatusOK ||
		len(s.Engines.Forgot) != 1 || s.Engines.Forgot[0] != "host-a by test-admin" {
		t.Fatalf("forget: %d %v", a.Status, s.Engines.Forgot)
	}
	s.Engines.Err = apitest.ErrStore
	if a := s.Do(http.MethodGet, "/api/engines", auth.RoleViewer, "", ""); a.Status != http.StatusServiceUnavailable {
		t.Fatalf("list with the store down: %d", a.Status)
	}
}

// Keeps are set and lifted by operators and admins, with a body that means
// one thing; an unknown instance and a lifted keep that was not there are
// 404.
func TestKeeps(t *testing.T) {
	s := apitest.New(t, apitest.Options{})
	const path = "/api/containers/stale/i1/keep"
	until := time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		name, method, path string
		role               auth.Role
		body               string
		want               int
		has                string
	}{
		{"viewer keeps", http.MethodPost, path, auth.RoleViewer, `{"until":"forever","reason":"x"}`, 403, "needs the role operator or admin"},
		{"no body", http.MethodPost, path, auth.RoleOperator, ``, 400, "needs a body"},
		{"no reason", http.MethodPost, path, auth.RoleOperator, `{"until":"forever"}`, 400, "reason is missing"},
		{"no until", http.MethodPost, path, auth.RoleOperator, `{"reason":"demo"}`, 400, "until is missing"},
		{"until in the past", http.MethodPost, path, auth.RoleOperator, `{"until":"2020-01-01T00:00:00Z","reason":"demo"}`, 400, "not in the future"},
		{"until not a time", http.MethodPost, path, auth.RoleOperator, `{"until":"next week","reason":"demo"}`, 400, "not an RFC 3339 time"},
		{"until too far", http.MethodPost, path, auth.RoleOperator, `{"until":"2299-01-01T00:00:00Z","reason":"demo"}`, 400, "100 years"},
		{"Forever", http.MethodPost, path, auth.RoleOperator, `{"until":"Forever","reason":"demo"}`, 400, "not an RFC 3339 time"},
		{"keys in two cases", http.MethodPost, path, auth.RoleOperator, `{"until":"forever","Until":"2020-01-01T00:00:00Z","reason":"x"}`, 400, "differ only in case"},
		{"unknown field", http.MethodPost, path, auth.RoleOperator, `{"until":"forever","reason":"x","by":"me"}`, 400, "unknown field"},
		{"reason not printable", http.MethodPost, path, auth.RoleOperator, `{"until":"forever","reason":"a\u0007b"}`, 400, "not printable"},
		{"reason too long", http.MethodPost, path, auth.RoleOperator, `{"until":"forever","reason":"` + strings.Repeat("x", 501) + `"}`, 400, "at most 500"},
		{"unknown instance", http.MethodPost, "/api/containers/stale/unknown/keep", auth.RoleOperator, `{"until":"forever","reason":"x"}`, 404, "no instance"},
		{"lift without a keep", http.MethodDelete, path, auth.RoleOperator, ``, 404, "has no keep"},
		{"a query", http.MethodPost, path + "?dry_run=true", auth.RoleOperator, `{"until":"forever","reason":"x"}`, 400, "unknown query parameter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct := ""
			if c.body != "" {
				ct = "application/json"
			}
			if a := s.Do(c.method, c.path, c.role, ct, c.body); a.Status != c.want || !strings.Contains(a.Error, c.has) {
				t.Fatalf("%d %q, want %d with %q", a.Status, a.Error, c.want, c.has)
			}
		})
	}
	if len(s.Cleaner.Keeps) != 0 {
		t.Fatalf("a refused keep was kept: %+v", s.Cleaner.Keeps)
	}
	a := s.Do(http.MethodPost, path, auth.RoleOperator, "application/json", `{"until":"`+until+`","reason":"demo on Friday"}`)
	var keep api.KeepView
	if err := json.Unmarshal(a.Data, &keep); err != nil || a.Status != http.StatusOK || keep.KeptUntil != until ||
		keep.KeptBy != "test-operator" || s.Cleaner.Keeps["i1"].Reason != "demo on Friday" {
		t.Fatalf("keep: %d %s %v", a.Status, a.Data, err)
	}
	if a := s.Do(http.MethodPost, path, auth.RoleAdmin, "application/json", `{"until":"forever","reason":"for good"}`); a.Status != http.StatusOK ||
		!s.Cleaner.Keeps["i1"].Forever() {
		t.Fatalf("keep forever: %d %s", a.Status, a.Data)
	}
	if a := s.Do(http.MethodDelete, path, auth.RoleOperator, "", ""); a.Status != http.StatusOK || len(s.Cleaner.Keeps) != 0 {
		t.Fatalf("lift: %d %s", a.Status, a.Data)
	}
}

// Kept instances and those whose labels do not parse are listed beside the
// stale ones, marked, so that a UI can show and lift keeps.
func TestListShowsKeptInstances(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	row := func(id string) stale.Instance {
		return stale.Instance{ID: id, ContainerID: "c-" + id, ProjectName: "shop", StageName: "preview"}
	}
	snap := &stale.Snapshot{ScannedAt: now, Observations: []stale.Observation{
		{Instance: row("stale"), Verdict: stale.Verdict{Stale: true, LastAlive: now.Add(-48 * time.Hour), StaleSince: now.Add(-24 * time.Hour)},
			Reclaimable: 2048, Measured: true},
		{Instance: row("kept"), Verdict: stale.Verdict{Reason: stale.ReasonKeptUntil, LastAlive: now.Add(-48 * time.Hour),
			Keep: &stale.Keep{Until: now.Add(time.Hour), By: "ops", Reason: "demo"}}},
		{Instance: row("odd"), Verdict: stale.Verdict{Reason: stale.ReasonPolicyUnparsable, Detail: `docker-watcher.stale-after="soon"`, LastAlive: now}},
		{Instance: row("running"), Verdict: stale.Verdict{Reason: stale.ReasonRunning, LastAlive: now}},
	}}
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: snap}})
	var rows []api.StaleContainer
	if err := json.Unmarshal(s.Do(http.MethodGet, "/api/containers/stale", auth.RoleViewer, "", "").Data, &rows); err != nil || len(rows) != 3 {
		t.Fatalf("rows: %+v %v", rows, err)
	}
	if r := rows[0]; r.InstanceID != "stale" || !r.Stale || r.StaleSince != "2026-11-22T12:00:00Z" || r.ReclaimableBytes == nil || *r.ReclaimableBytes != 2048 ||
		r.AutomaticCleanupFrom != "2026-11-22T12:00:00Z" {
		t.Errorf("stale row: %+v", r)
	}
	if r := rows[1]; r.InstanceID != "kept" || r.Stale || r.KeptUntil != "2026-11-23T13:00:00Z" || r.KeptBy != "ops" || r.KeepReason != "demo" {
		t.Errorf("kept row: %+v", r)
	}
	if r := rows[2]; r.InstanceID != "odd" || r.Stale || !strings.Contains(r.Reason, "stale-after") {
		t.Errorf("row with a label that does not parse: %+v", r)
	}
}

// A job is read at the path a 202 names; an id that is not a job is 404,
// one that is not a number 400.
func TestGetCleanup(t *testing.T) {
	s := apitest.New(t, apitest.Options{})
	s.Cleaner.Job = func(r apitest.Request) (store.Job, error) {
		return store.Job{ID: 7, InstanceID: r.ID, State: store.JobRunning, Trigger: store.TriggerSingle}, nil
	}
	a := s.Do(http.MethodPost, "/api/containers/stale/i1/cleanup", auth.RoleOperator, "", "")
	if a.Status != http.StatusAccepted || a.Header.Get("Location") != "/api/cleanups/7" {
		t.Fatalf("a job still running: %d, Location %q", a.Status, a.Header.Get("Location"))
	}
	got := s.Do(http.MethodGet, a.Header.Get("Location"), auth.RoleViewer, "", "")
	var job api.JobView
	if err := json.Unmarshal(got.Data, &job); err != nil || got.Status != http.StatusOK || job.JobID != 7 || job.InstanceID != "i1" {
		t.Fatalf("GET %s: %d %s", a.Header.Get("Location"), got.Status, got.Data)
	}
	for path, want := range map[string]int{
		"/api/cleanups/8": http.StatusNotFound, "/api/cleanups/x": http.StatusBadRequest, "/api/cleanups/-1": http.StatusBadRequest,
		"/api/cleanups/99999999999999999999": http.StatusBadRequest, "/api/cleanups/7?x=1": http.StatusBadRequest,
	} {
		if a := s.Do(http.MethodGet, path, auth.RoleViewer, "", ""); a.Status != want {
			t.Errorf("GET %s: %d, want %d", path, a.Status, want)
		}
	}
	if a := s.Do(http.MethodGet, "/api/cleanups/7", "", "", ""); a.Status != http.StatusUnauthorized {
		t.Errorf("GET a job without a token: %d", a.Status)
	}
}
