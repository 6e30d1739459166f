package cleanup_test

import (
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/cleanup"
)

func TestParseBulkRequest(t *testing.T) {
	for _, c := range []struct {
		body     string
		want     cleanup.BulkRequest
		errorHas string
	}{
		{``, cleanup.BulkRequest{Max: 10}, ""},
		{`{}`, cleanup.BulkRequest{Max: 10}, ""},
		{`{"dry_run": true, "max": 3}`, cleanup.BulkRequest{DryRun: true, Max: 3}, ""},
		{`{"dry_run": true, "dry_run": false, "max": 1}`, cleanup.BulkRequest{}, "appears twice"},
		{`{"dry_run": null}`, cleanup.BulkRequest{}, "null"},
		{`{"max": null}`, cleanup.BulkRequest{}, "null"},
		{`null`, cleanup.BulkRequest{}, "null"},
		{`{"dry_run": "true"}`, cleanup.BulkRequest{}, "cannot unmarshal"},
		{`{"max": 2.5}`, cleanup.BulkRequest{}, "cannot unmarshal"},
		{`{"max": -1}`, cleanup.BulkRequest{}, "negative"},
		{`{"max": 11}`, cleanup.BulkRequest{}, "cap"},
		{`{"dryrun": true}`, cleanup.BulkRequest{}, "unknown field"},
		{`{"dry_run": true} {}`, cleanup.BulkRequest{}, "trailing"},
		{`{"a": {"b": {"c": 1, "c": 2}}}`, cleanup.BulkRequest{}, "appears twice"},
		{strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40), cleanup.BulkRequest{}, "nested deeper"},
	} {
		got, err := cleanup.ParseBulkRequest([]byte(c.body), 10)
		if c.errorHas == "" && (err != nil || got != c.want) {
			t.Errorf("%s: %+v, %v; want %+v", c.body, got, err, c.want)
		}
		if c.errorHas != "" && (err == nil || !strings.Contains(err.Error(), c.errorHas)) {
			t.Errorf("%s: %v, want an error with %q", c.body, err, c.errorHas)
		}
	}
}

func TestParseWebhook(t *testing.T) {
	msg, err := cleanup.ParseWebhook([]byte(`{"version":"4","groupKey":"{}:{a=\"b\"}","truncatedAlerts":3,"newField":{"x":1},
		"alerts":[{"status":"firing","labels":{"alertname":"StaleContainer"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z"}]}`))
	if err != nil || len(msg.Alerts) != 1 || msg.TruncatedAlerts != 3 || msg.GroupKey != `{}:{a="b"}` || msg.Alerts[0].Labels["alertname"] != "StaleContainer" {
		t.Fatalf("ParseWebhook = %+v, %v", msg, err)
	}
	for body, errorHas := range map[string]string{
		`{"status":"firing"}`:         "no alerts",
		`{"alerts":null}`:             "null",
		`{"alerts":[],"alerts":[{}]}`: "appears twice",
		`{"alerts":[{"labels":{"action":"x","action":"cleanup"}}]}`: "appears twice",
		`{"alerts":[{"annotations":null}]}`:                         "null",
		`{"alerts":[{"status":1}]}`:                                 "cannot unmarshal",
		`[1]`:                                                       "cannot unmarshal",
	} {
		if _, err := cleanup.ParseWebhook([]byte(body)); err == nil || !strings.Contains(err.Error(), errorHas) {
			t.Errorf("%s: %v, want an error with %q", body, err, errorHas)
		}
	}
}
