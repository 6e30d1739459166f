package api_test

import (
	"encoding/json"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/api"
)

// An accepted webhook payload means one thing: a generic decoder sees the
// same alerts, with the same status and labels, as the webhook does.
func FuzzParseWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"StaleContainer"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"a"}]}`,
		`{"alerts":[]}`, `{"alerts":null}`, `{"alerts":[{"startsAt":"not a time"}]}`, `{"alerts":"x"}`,
		`[]`, `null`, `{`, ``, `{"alerts":[{"labels":{"a":1}}]}`, `{"alerts":[{"labels":{"a":"1","a":"2"}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := api.ParseWebhook(body)
		if err != nil {
			return
		}
		var generic struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal(body, &generic); err != nil {
			t.Fatalf("accepted %q, which a generic decoder refuses: %v", body, err)
		}
		if len(generic.Alerts) != len(msg.Alerts) {
			t.Fatalf("accepted %q: %d alerts, a generic decoder sees %d", body, len(msg.Alerts), len(generic.Alerts))
		}
		for i, a := range generic.Alerts {
			if a.Status != msg.Alerts[i].Status || len(a.Labels) != len(msg.Alerts[i].Labels) {
				t.Fatalf("accepted %q: alert %d read differently", body, i)
			}
			for k, v := range a.Labels {
				if msg.Alerts[i].Labels[k] != v {
					t.Fatalf("accepted %q: label %s read as %q, generically %q", body, k, msg.Alerts[i].Labels[k], v)
				}
			}
		}
	})
}

// An accepted bulk body means one thing: whichever occurrence of a key a
// reader keeps, it finds the dry_run and max the server acts on.
func FuzzParseBulkRequest(f *testing.F) {
	for _, seed := range []string{`{}`, `{"dry_run":true,"max":3}`, `{"max":-1}`, `{"max":1e9}`, `{"x":1}`, ``, ` `,
		`{"max":"1"}`, `{}{}`, `{"dry_run":true,"dry_run":false}`, `{"dry_run":null}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const limit = 50
		req, err := api.ParseBulkRequest(body, limit)
		if err != nil {
			return
		}
		if req.Max < 1 || req.Max > limit {
			t.Fatalf("accepted max %d outside 1..%d from %q", req.Max, limit, body)
		}
		var first map[string]json.RawMessage
		if json.Unmarshal(body, &first) != nil {
			return // empty body: the defaults
		}
		if raw, ok := first["dry_run"]; ok && string(raw) != "true" && string(raw) != "false" {
			t.Fatalf("accepted dry_run %s from %q", raw, body)
		}
		if raw, ok := first["dry_run"]; ok && (string(raw) == "true") != req.DryRun {
			t.Fatalf("dry_run %s read as %v from %q", raw, req.DryRun, body)
		}
	})
}
