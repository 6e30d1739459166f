package api_test

import (
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/api"
)

func TestParseBulkRequest(t *testing.T) {
	for _, c := range []struct {
		body, query string
		want        api.BulkRequest
		errorHas    string
	}{
		{``, ``, api.BulkRequest{Max: 10}, ""},
		{`  `, ``, api.BulkRequest{Max: 10}, ""},
		{`{}`, ``, api.BulkRequest{Max: 10}, ""},
		{`{"dry_run": true, "max": 3}`, ``, api.BulkRequest{DryRun: true, Max: 3}, ""},
		{`{"dry_run": true}`, `dry_run=true`, api.BulkRequest{DryRun: true, Max: 10}, ""},
		{``, `dry_run=true`, api.BulkRequest{DryRun: true, Max: 10}, ""},
		{``, `dry_run=1`, api.BulkRequest{DryRun: true, Max: 10}, ""},
		{`{"dry_run": false}`, `dry_run=false`, api.BulkRequest{Max: 10}, ""},
		// Two meanings: refused.
		{`{"dry_run": true}`, `dry_run=false`, api.BulkRequest{}, "say it once"},
		{`{"dry_run": false}`, `dry_run=true`, api.BulkRequest{}, "say it once"},
		{`{"dry_run":true,"DRY_RUN":false}`, ``, api.BulkRequest{}, "differ only in case"},
		{`{"DRY_RUN":true}`, ``, api.BulkRequest{}, "case-sensitive"},
		{`{"Dry_Run":false}`, ``, api.BulkRequest{}, "case-sensitive"},
		{`{"max":1,"MAX":2}`, ``, api.BulkRequest{}, "differ only in case"},
		{`{"dry_run": true, "dry_run": false, "max": 1}`, ``, api.BulkRequest{}, "appears twice"},
		{`{"dry_run": null}`, ``, api.BulkRequest{}, "null"},
		{`{"max": null}`, ``, api.BulkRequest{}, "null"},
		{`null`, ``, api.BulkRequest{}, "null"},
		{`{"dry_run": "true"}`, ``, api.BulkRequest{}, "cannot unmarshal"},
		{`{"max": 2.5}`, ``, api.BulkRequest{}, "cannot unmarshal"},
		{`{"max": -1}`, ``, api.BulkRequest{}, "negative"},
		{`{"max": 11}`, ``, api.BulkRequest{}, "cap"},
		{`{"dryrun": true}`, ``, api.BulkRequest{}, "unknown field"},
		{`{"dry_run": true} {}`, ``, api.BulkRequest{}, "trailing"},
		{`{"a": {"b": {"c": 1, "c": 2}}}`, ``, api.BulkRequest{}, "appears twice"},
		{strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40), ``, api.BulkRequest{}, "nested deeper"},
		// Queries that do not say one thing.
		{``, `dry_run`, api.BulkRequest{}, "no value"},
		{``, `dry_run=`, api.BulkRequest{}, "no value"},
		{``, `dry_run=false&dry_run=true`, api.BulkRequest{}, "2 times"},
		{``, `DRY_RUN=true`, api.BulkRequest{}, "unknown query parameter"},
		{``, `dry-run=true`, api.BulkRequest{}, "unknown query parameter"},
		{``, `dry_run=yes`, api.BulkRequest{}, "true or false"},
		{``, `max=3`, api.BulkRequest{}, "unknown query parameter"},
		{``, `dry_run=true;x=1`, api.BulkRequest{}, "malformed query"},
	} {
		got, err := api.ParseBulkRequest([]byte(c.body), c.query, 10)
		if c.errorHas == "" && (err != nil || got != c.want) {
			t.Errorf("%s ?%s: %+v, %v; want %+v", c.body, c.query, got, err, c.want)
		}
		if c.errorHas != "" && (err == nil || !strings.Contains(err.Error(), c.errorHas)) {
			t.Errorf("%s ?%s: %+v %v, want an error with %q", c.body, c.query, got, err, c.errorHas)
		}
	}
}

func TestParseSingleRequest(t *testing.T) {
	for _, c := range []struct {
		body, query string
		dryRun      bool
		errorHas    string
	}{
		{``, ``, false, ""},
		{``, `dry_run=true`, true, ""},
		{``, `dry_run=false`, false, ""},
		{`{"dry_run": true}`, ``, true, ""},
		{`{"dry_run": true}`, `dry_run=true`, true, ""},
		{`{}`, ``, false, ""},
		{`{"dry_run": true}`, `dry_run=false`, false, "say it once"},
		{``, `dry_run`, false, "no value"},
		{``, `dry_run=false&dry_run=true`, false, "2 times"},
		{``, `DRY_RUN=true`, false, "unknown query parameter"},
		{``, `dry-run=true`, false, "unknown query parameter"},
		{``, `dryrun=true`, false, "unknown query parameter"},
		{`{"DRY_RUN": true}`, ``, false, "case-sensitive"},
		{`{"dry_run": true, "Dry_Run": false}`, ``, false, "differ only in case"},
		{`{"dry_run": "true"}`, ``, false, "cannot unmarshal"},
		{`{"max": 1}`, ``, false, "unknown field"},
	} {
		got, err := api.ParseSingleRequest([]byte(c.body), c.query)
		if c.errorHas == "" && (err != nil || got != c.dryRun) {
			t.Errorf("%s ?%s: %v, %v; want %v", c.body, c.query, got, err, c.dryRun)
		}
		if c.errorHas != "" && (err == nil || !strings.Contains(err.Error(), c.errorHas)) {
			t.Errorf("%s ?%s: %v %v, want an error with %q", c.body, c.query, got, err, c.errorHas)
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
		// Case: encoding/json folds keys and keeps the last; refused.
		`{"alerts":[{"status":"resolved","Status":"firing"}]}`:                    "differ only in case",
		`{"alerts":[{"labels":{"alertname":"x"},"Labels":{"action":"cleanup"}}]}`: "differ only in case",
		`{"alerts":[{"Labels":{"action":"cleanup"}}]}`:                            "case-sensitive",
		`{"Alerts":[]}`: "case-sensitive",
		`{"alerts":[{"labels":{"action":"none","ACTION":"cleanup"}}]}`: "differ only in case",
		`{"alerts":[{"labels":{"k":"1","\u212a":"2"}}]}`:               "differ only in case",
		`{"alerts":[],"truncatedAlerts":18446744073709551615}`:         "truncatedAlerts",
		`{"alerts":[],"truncatedAlerts":1048577}`:                      "truncatedAlerts",
	} {
		if _, err := api.ParseWebhook([]byte(body)); err == nil || !strings.Contains(err.Error(), errorHas) {
			t.Errorf("%s: %v, want an error with %q", body, err, errorHas)
		}
	}
}
