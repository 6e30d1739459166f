package cleanup_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// BenchmarkWebhookConcurrent sends 100 concurrent webhook deliveries per
// iteration, each a new StaleContainer occurrence (half asking for cleanup,
// whose jobs then run in the background), and reports answer latency.
func BenchmarkWebhookConcurrent(b *testing.B) {
	const deliveries = 100
	e := newEnv(b, envOptions{maxStaleRatio: 1})
	ids := make([]string, deliveries)
	for i := range ids {
		ids[i] = e.db.AddInstance(b, storetest.Instance{CreatedAt: time.Now().Add(-2 * threshold), ContainerID: fmt.Sprintf("missing-%d", i)})
	}
	var latencies []time.Duration
	round := 0
	for b.Loop() {
		round++
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, id := range ids {
			alert := staleAlert(id, fmt.Sprintf("missing-%d", i), i%2 == 0, time.Now())
			alert.Fingerprint = fmt.Sprintf("fp-%d-%d", round, i)
			payload := mustJSON(b, webhookPayload(alert))
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				req, _ := http.NewRequest(http.MethodPost, e.url+"/api/alertmanager/webhook", strings.NewReader(payload))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+e.tokens[auth.RoleAlertmanager])
				res, err := http.DefaultClient.Do(req)
				elapsed := time.Since(start)
				if err != nil {
					b.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Errorf("webhook: %d", res.StatusCode)
				}
				mu.Lock()
				latencies = append(latencies, elapsed)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(latencies)), "deliveries")
}

// BenchmarkBulkCleanup200 times one bulk request that removes 200 stale
// containers, from the request to the answer with every job done.
func BenchmarkBulkCleanup200(b *testing.B) {
	const stale = 200
	e := newEnv(b, envOptions{maxStaleRatio: 1})
	for b.Loop() {
		b.StopTimer()
		for range stale {
			e.staleInstance("bulk")
		}
		b.StartTimer()
		r := e.postJSON("/api/containers/stale/cleanup", auth.RoleAdmin, map[string]any{"max": stale})
		b.StopTimer()
		res := decode[struct{ Results []jobJSON }](b, r.Data)
		removed := 0
		for _, j := range res.Results {
			if j.Result == store.ResultRemoved {
				removed++
			}
		}
		if r.status != http.StatusOK || removed != stale {
			b.Fatalf("bulk: %d, %d of %d removed", r.status, removed, stale)
		}
		b.StartTimer()
	}
}
