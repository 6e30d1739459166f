package cleanup_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

// sendChunked is do with a body sent chunked (no Content-Length), as curl
// --data-binary from a pipe or a proxy re-framing it sends it.
func (e *env) sendChunked(method, path string, role auth.Role, contentType, body string) response {
	e.t.Helper()
	// A reader of unknown length makes the client send chunked.
	req, err := http.NewRequest(method, e.url+path, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var r response
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, &r); err != nil {
		e.t.Fatalf("%s %s: %d, not JSON: %s", method, path, res.StatusCode, raw)
	}
	r.status = res.StatusCode
	return r
}

// Requests that say "dry run" (or "not cleanup") in unusual ways removed for
// real. Each is now refused or read as the dry run it says, and the stale
// container survives them all.
func TestRequestsThatSayDryRunRemoveNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	single := "/api/containers/stale/" + id + "/cleanup"
	const bulk, hook = "/api/containers/stale/cleanup", "/api/alertmanager/webhook"
	alert := func(fields string) string {
		return `{"alerts":[{` + fields + `,"annotations":{},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f1"}]}`
	}
	labels := `"labels":{"alertname":"StaleContainer","instance_id":"` + id + `","action":"cleanup"}`
	for _, c := range []struct {
		name, method, path string
		role               auth.Role
		chunked            bool
		contentType, body  string
		want               int
		has                string
	}{
		// 1. Bulk.
		{"bulk chunked, no content type", http.MethodPost, bulk, auth.RoleAdmin, true, "", `{"dry_run":true}`, 400, "Content-Type"},
		{"bulk chunked JSON is read", http.MethodPost, bulk, auth.RoleAdmin, true, "application/json", `{"dry_run":true}`, 200, `"dry_run":true`},
		{"bulk keys differing in case", http.MethodPost, bulk, auth.RoleAdmin, false, "application/json", `{"dry_run":true,"DRY_RUN":false}`, 400, "differ only in case"},
		{"bulk key in another case", http.MethodPost, bulk, auth.RoleAdmin, false, "application/json", `{"DRY_RUN":false}`, 400, "case-sensitive"},
		{"bulk body and query disagree", http.MethodPost, bulk + "?dry_run=false", auth.RoleAdmin, false, "application/json", `{"dry_run":true}`, 400, "say it once"},
		{"bulk query dry run", http.MethodPost, bulk + "?dry_run=true", auth.RoleAdmin, false, "", ``, 200, `"dry_run":true`},
		// 2. Single.
		{"single dry_run without a value", http.MethodPost, single + "?dry_run", auth.RoleOperator, false, "", ``, 400, "no value"},
		{"single dry_run repeated", http.MethodPost, single + "?dry_run=false&dry_run=true", auth.RoleOperator, false, "", ``, 400, "2 times"},
		{"single DRY_RUN", http.MethodPost, single + "?DRY_RUN=true", auth.RoleOperator, false, "", ``, 400, "unknown query parameter"},
		{"single dry-run", http.MethodPost, single + "?dry-run=true", auth.RoleOperator, false, "", ``, 400, "unknown query parameter"},
		{"single body dry run", http.MethodPost, single, auth.RoleOperator, false, "application/json", `{"dry_run":true}`, 200, `"result":"would_remove"`},
		{"single chunked body dry run", http.MethodPost, single, auth.RoleOperator, true, "application/json", `{"dry_run":true}`, 200, `"result":"would_remove"`},
		{"single chunked body without type", http.MethodPost, single, auth.RoleOperator, true, "", `{"dry_run":true}`, 400, "Content-Type"},
		{"single body and query disagree", http.MethodPost, single + "?dry_run=false", auth.RoleOperator, false, "application/json", `{"dry_run":true}`, 400, "say it once"},
		// 3. Webhook.
		{"webhook status in two cases", http.MethodPost, hook, auth.RoleAlertmanager, false, "application/json",
			alert(`"status":"resolved","Status":"firing",` + labels), 400, "differ only in case"},
		{"webhook labels in two cases", http.MethodPost, hook, auth.RoleAlertmanager, false, "application/json",
			alert(`"status":"firing","labels":{"alertname":"StaleContainer","instance_id":"` + id + `"},"Labels":{"action":"cleanup"}`), 400, "differ only in case"},
		{"webhook Labels alone", http.MethodPost, hook, auth.RoleAlertmanager, false, "application/json",
			alert(`"status":"firing","Labels":{"alertname":"StaleContainer","instance_id":"` + id + `","action":"cleanup"}`), 400, "case-sensitive"},
		{"webhook with a query", http.MethodPost, hook + "?dry_run=false", auth.RoleAlertmanager, false, "application/json", alert(`"status":"firing",` + labels), 400, "unknown query parameter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r response
			if c.chunked {
				r = e.sendChunked(c.method, c.path, c.role, c.contentType, c.body)
			} else {
				r = e.do(c.method, c.path, c.role, c.contentType, []byte(c.body))
			}
			text := r.Error + string(r.Data)
			if r.status != c.want || !strings.Contains(text, c.has) {
				t.Fatalf("%d %s, want %d with %q", r.status, text, c.want, c.has)
			}
			if !e.containerExists(cid) || !e.instanceExists(id) {
				t.Fatal("the request removed the stale container")
			}
		})
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs"); n != 0 || e.engine.removes.Load() != 0 {
		t.Fatalf("%d jobs, %d removals: a dry run or refused request started a cleanup", n, e.engine.removes.Load())
	}
	// A plain request still works, after all of that.
	if r := e.do(http.MethodPost, single, auth.RoleOperator, "", nil); r.status != http.StatusOK || e.containerExists(cid) {
		t.Fatalf("a plain cleanup: %d %q", r.status, r.Error)
	}
}
