package cleanup_test

import (
	"encoding/json"
	"testing"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/store"
)

func FuzzParseWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"StaleContainer"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"a"}]}`,
		`{"alerts":[]}`, `{"alerts":null}`, `{"alerts":[{"startsAt":"not a time"}]}`, `{"alerts":"x"}`,
		`[]`, `null`, `{`, ``, `{"alerts":[{"labels":{"a":1}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		data, err := cleanup.ParseWebhook(body)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for _, a := range data.Alerts {
			_ = a.Labels["instance_id"]
		}
	})
}

func FuzzParseBulkRequest(f *testing.F) {
	for _, seed := range []string{`{}`, `{"dry_run":true,"max":3}`, `{"max":-1}`, `{"max":1e9}`, `{"x":1}`, ``, ` `, `{"max":"1"}`, `{}{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const limit = 50
		req, err := cleanup.ParseBulkRequest(body, limit)
		if err == nil && (req.Max < 1 || req.Max > limit) {
			t.Fatalf("accepted max %d outside 1..%d from %q", req.Max, limit, body)
		}
	})
}

func FuzzRequestParameters(f *testing.F) {
	for _, seed := range []string{"true", "false", "1", "", "yes", "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if store.IsUUID(s) && len(s) != 36 {
			t.Fatalf("IsUUID(%q) for a string of length %d", s, len(s))
		}
		if _, err := cleanup.ParseDryRun(s); err != nil && s == "" {
			t.Fatal("empty dry_run refused")
		}
	})
}
