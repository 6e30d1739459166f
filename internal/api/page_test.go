package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/api/apitest"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// The list pages by a cursor: filtered by project and stage, each row once
// across pages, in order, with the total of the query; a scan between two
// pages neither repeats nor skips a row that was there on both (a new row
// that sorts before the cursor is on the first page, next time).
func TestListPages(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var obs []stale.Observation
	add := func(id, project, stage string, daysAgo int) {
		obs = append(obs, stale.Observation{
			Instance:  stale.Instance{ID: id, ContainerID: "c-" + id, ProjectName: project, StageName: stage},
			Container: stale.Container{Found: true, State: "exited"},
			Verdict:   stale.Verdict{Stale: true, LastAlive: now.AddDate(0, 0, -daysAgo)},
		})
	}
	for i := range 7 {
		add(fmt.Sprintf("p%d", i), "shop", "preview", 10+i%3) // ties on last alive, ordered by id
	}
	add("other-project", "blog", "preview", 40)
	add("other-stage", "shop", "review", 40)
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{ScannedAt: now, Observations: obs}}})

	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		q := url.Values{"project": {"shop"}, "stage": {"preview"}, "limit": {"3"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		a := s.Do(http.MethodGet, "/api/containers/stale?"+q.Encode(), auth.RoleViewer, "", "")
		var rows []api.StaleContainer
		wantTotal := 7
		if pages > 0 {
			wantTotal = 8 // the query's rows now, the new one with them
		}
		if err := json.Unmarshal(a.Data, &rows); err != nil || a.Total == nil || *a.Total != wantTotal {
			t.Fatalf("page %d: %s total %v (%v)", pages, a.Data, a.Total, err)
		}
		for _, r := range rows {
			seen = append(seen, r.InstanceID)
		}
		if pages == 0 {
			// A scan between pages: a new stale row, longest of all.
			add("p-new", "shop", "preview", 99)
			s.Scans.Set(scan.Result{Success: true, Snapshot: &stale.Snapshot{ScannedAt: now, Observations: obs}})
		}
		if cursor = a.NextCursor; cursor == "" {
			break
		}
		if pages > 5 {
			t.Fatal("no last page")
		}
	}
	// Longest since last alive first (12 days: p2, p5; 11: p1, p4; 10: p0, p3, p6).
	want := []string{"p2", "p5", "p1", "p4", "p0", "p3", "p6"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("rows across pages: %v, want %v", seen, want)
	}
}
