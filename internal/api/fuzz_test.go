package api_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/api"
)

// An accepted webhook payload means one thing: a generic decoder sees the
// same alerts, with the same status and labels, as the webhook does, and no
// object of it holds keys that differ only in case.
func FuzzParseWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"StaleContainer"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"a"}]}`,
		`{"alerts":[]}`, `{"alerts":null}`, `{"alerts":[{"startsAt":"not a time"}]}`, `{"alerts":"x"}`,
		`[]`, `null`, `{`, ``, `{"alerts":[{"labels":{"a":1}}]}`, `{"alerts":[{"labels":{"a":"1","a":"2"}}]}`,
		`{"alerts":[{"status":"resolved","Status":"firing"}]}`, `{"alerts":[{"Labels":{"action":"cleanup"}}]}`,
		`{"alerts":[{"labels":{"action":"x","ACTION":"cleanup"}}]}`, `{"ALERTS":[]}`,
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
		var raw any
		if json.Unmarshal(body, &raw) == nil && hasFoldDuplicateKeys(raw) {
			t.Fatalf("accepted %q, whose keys differ only in case", body)
		}
	})
}

// hasFoldDuplicateKeys reports whether a generically decoded value holds an
// object with two keys equal under Unicode case folding (a map keeps both
// spellings).
func hasFoldDuplicateKeys(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k, child := range x {
			for _, other := range keys {
				if strings.EqualFold(k, other) {
					return true
				}
			}
			keys = append(keys, k)
			if hasFoldDuplicateKeys(child) {
				return true
			}
		}
	case []any:
		for _, child := range x {
			if hasFoldDuplicateKeys(child) {
				return true
			}
		}
	}
	return false
}

// dryRunMeanings are every way a reader could take a request's dry run:
// from the body's key as written (any case, any occurrence) and from the
// query's parameter (any case and spelling). An accepted request must have
// exactly one.
func dryRunMeanings(t *testing.T, body []byte, query string) map[bool]bool {
	t.Helper()
	meanings := map[bool]bool{}
	dec := json.NewDecoder(bytes.NewReader(body))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 1 && strings.EqualFold(strings.ReplaceAll(v, "-", "_"), "dry_run") {
				if next, err := dec.Token(); err == nil {
					if b, ok := next.(bool); ok {
						meanings[b] = true
					}
				}
			}
		}
	}
	values, _ := url.ParseQuery(query)
	for k, vs := range values {
		if strings.EqualFold(strings.ReplaceAll(k, "-", "_"), "dry_run") {
			for _, v := range vs {
				b, err := strconv.ParseBool(v)
				meanings[b || err != nil || v == ""] = true
			}
		}
	}
	return meanings
}

// An accepted bulk request means one thing: whichever occurrence or case of
// a key, or of a query parameter, a reader keeps, it finds the dry run and
// max the server acts on.
func FuzzParseBulkRequest(f *testing.F) {
	for _, seed := range []struct{ body, query string }{{`{}`, ``}, {`{"dry_run":true,"max":3}`, ``}, {`{"max":-1}`, ``},
		{`{"max":1e9}`, ``}, {`{"x":1}`, ``}, {``, `dry_run=true`}, {` `, `dry_run`}, {`{"max":"1"}`, ``}, {`{}{}`, ``},
		{`{"dry_run":true,"dry_run":false}`, ``}, {`{"dry_run":null}`, ``}, {`{"dry_run":true,"DRY_RUN":false}`, ``},
		{`{"dry_run":true}`, `dry_run=false`}, {``, `DRY_RUN=true`}, {``, `dry-run=true`}, {``, `dry_run=false&dry_run=true`}} {
		f.Add([]byte(seed.body), seed.query)
	}
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		const limit = 50
		req, err := api.ParseBulkRequest(body, query, limit)
		if err != nil {
			return
		}
		if req.Max < 1 || req.Max > limit {
			t.Fatalf("accepted max %d outside 1..%d from %q", req.Max, limit, body)
		}
		if m := dryRunMeanings(t, body, query); len(m) > 1 || (len(m) == 1 && !m[req.DryRun]) {
			t.Fatalf("accepted %q ?%q as dry_run=%v; readers could take %v", body, query, req.DryRun, m)
		}
	})
}

// An accepted single cleanup means one thing, as a bulk request does.
func FuzzParseSingleRequest(f *testing.F) {
	for _, seed := range []struct{ body, query string }{{``, ``}, {``, `dry_run=true`}, {``, `dry_run`}, {`{"dry_run":true}`, ``},
		{`{"dry_run":true}`, `dry_run=false`}, {``, `DRY_RUN=true`}, {``, `dry-run=1`}, {``, `dry_run=false&dry_run=true`},
		{`{"Dry_Run":true}`, ``}} {
		f.Add([]byte(seed.body), seed.query)
	}
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		dryRun, err := api.ParseSingleRequest(body, query)
		if err != nil {
			return
		}
		if m := dryRunMeanings(t, body, query); len(m) > 1 || (len(m) == 1 && !m[dryRun]) {
			t.Fatalf("accepted %q ?%q as dry_run=%v; readers could take %v", body, query, dryRun, m)
		}
	})
}
