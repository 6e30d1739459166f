package api_test

import (
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/api"
)

func TestParseBulkRequest(t *testing.T) {
	for _, c := range []struct {
		body     string
		want     api.BulkRequest
		errorHas string
	}{
		{``, api.BulkRequest{Max: 10}, ""},
		{`{}`, api.BulkRequest{Max: 10}, ""},
		{`{"dry_run": true, "max": 3}`, api.BulkRequest{DryRun: true, Max: 3}, ""},
		{`{"dry_run": true, "dry_run": false, "max": 1}`, api.BulkRequest{}, "appears twice"},
		{`{"dry_run": null}`, api.BulkRequest{}, "null"},
		{`{"max": null}`, api.BulkRequest{}, "null"},
		{`null`, api.BulkRequest{}, "null"},
		{`{"dry_run": "true"}`, api.BulkRequest{}, "cannot unmarshal"},
		{`{"max": 2.5}`, api.BulkRequest{}, "cannot unmarshal"},
		{`{"max": -1}`, api.BulkRequest{}, "negative"},
		{`{"max": 11}`, api.BulkRequest{}, "cap"},
		{`{"dryrun": true}`, api.BulkRequest{}, "unknown field"},
		{`{"dry_run": true} {}`, api.BulkRequest{}, "trailing"},
		{`{"a": {"b": {"c": 1, "c": 2}}}`, api.BulkRequest{}, "appears twice"},
		{strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40), api.BulkRequest{}, "nested deeper"},
	} {
		got, err := api.ParseBulkRequest([]byte(c.body), 10)
		if c.errorHas == "" && (err != nil || got != c.want) {
			t.Errorf("%s: %+v, %v; want %+v", c.body, got, err, c.want)
		}
		if c.errorHas != "" && (err == nil || !strings.Contains(err.Error(), c.errorHas)) {
			t.Errorf("%s: %v, want an error with %q", c.body, err, c.errorHas)
		}
	}
}

func TestParseWebhook(t *testing.T) {
	msg, err := api.ParseWebhook([]byte(`{"version":"4","groupKey":"{}:{a=\"b\"}","truncatedAlerts":3,"newField":{"x":1},
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
		if _, err := api.ParseWebhook([]byte(body)); err == nil || !strings.Contains(err.Error(), errorHas) {
			t.Errorf("%s: %v, want an error with %q", body, err, errorHas)
		}
	}
}
