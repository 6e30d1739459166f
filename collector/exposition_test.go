package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// fixedResults answers a hand-made scan result; block holds every call
// until it is closed.
type fixedResults struct {
	mu    sync.Mutex
	r     scan.Result
	block chan struct{}
	calls atomic.Int64
}

func (f *fixedResults) Result(ctx context.Context) scan.Result {
	f.calls.Add(1)
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.r
}

func (f *fixedResults) set(r scan.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.r = r
}

func snapshotOf(n int) *stale.Snapshot {
	now := time.Now()
	snap := &stale.Snapshot{Threshold: time.Hour, ScannedAt: now}
	for i := range n {
		in := stale.Instance{ID: "id-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)), ProjectName: "shop", StageName: "preview",
			ImageTag: "t", ContainerID: "c", CreatedAt: now.Add(-2 * time.Hour)}
		snap.Observations = append(snap.Observations, stale.Observation{Instance: in,
			Verdict: stale.Judge(in, stale.Container{}, time.Hour, now)})
	}
	return snap
}

func scrape(t *testing.T, h http.Handler, gzipped bool) (int, string, *http.Response) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gzipped {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body := rec.Body.Bytes()
	if gzipped && res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode, string(body), res
}

// The exposition is rendered once per scan: a later scrape of the same scan
// gets the same bytes, a new scan a new rendering.
func TestHandlerRendersOncePerScan(t *testing.T) {
	results := &fixedResults{r: scan.Result{Seq: 1, Success: true, Snapshot: snapshotOf(1)}}
	h := collector.NewHandler(results, prometheus.NewPedanticRegistry(), testenv.EngineName, collector.HandlerOpts{Timeout: time.Second}, slog.New(slog.DiscardHandler))

	status, first, res := scrape(t, h, false)
	if status != http.StatusOK || !strings.Contains(first, "instance_stale{") || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("first scrape: %d %s\n%s", status, res.Header.Get("Content-Type"), first)
	}
	_, zipped, res := scrape(t, h, true)
	if res.Header.Get("Content-Encoding") != "gzip" || zipped != first {
		t.Fatalf("gzipped scrape differs from the plain one")
	}
	results.set(scan.Result{Seq: 1, Success: true, Snapshot: snapshotOf(2)})
	if _, again, _ := scrape(t, h, false); again != first {
		t.Fatal("a scrape of the same scan was rendered anew")
	}
	results.set(scan.Result{Seq: 2, Success: true, Snapshot: snapshotOf(2)})
	if _, next, _ := scrape(t, h, false); strings.Count(next, "instance_stale{") != 2 {
		t.Fatalf("a new scan was not rendered anew:\n%s", next)
	}
}

func TestHandlerLimitsConcurrentScrapes(t *testing.T) {
	results := &fixedResults{r: scan.Result{Seq: 1}, block: make(chan struct{})}
	h := collector.NewHandler(results, prometheus.NewRegistry(), testenv.EngineName, collector.HandlerOpts{MaxRequests: 2, Timeout: 10 * time.Second},
		slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _, _ := scrape(t, h, false); status != http.StatusOK {
				t.Errorf("scrape within the limit: %d", status)
			}
		}()
	}
	for results.calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	status, _, _ := scrape(t, h, false)
	close(results.block)
	wg.Wait()
	if status != http.StatusServiceUnavailable {
		t.Fatalf("third concurrent scrape: %d, want 503", status)
	}
	if status, _, _ := scrape(t, h, false); status != http.StatusOK {
		t.Fatalf("scrape after the others finished: %d", status)
	}
}

// A scrape asks for one scan result and renders that one: the gauges and the
// self-metrics of one scrape come from one scan. With a cache TTL shorter
// than a scan, the render used to ask again and so scan twice per scrape.
func TestOneScrapeOneScan(t *testing.T) {
	results := &fixedResults{r: scan.Result{Seq: 1, Success: true, Snapshot: snapshotOf(1)}}
	h := collector.NewHandler(results, prometheus.NewRegistry(), testenv.EngineName, collector.HandlerOpts{Timeout: time.Second}, slog.New(slog.DiscardHandler))
	scrape(t, h, false)
	if n := results.calls.Load(); n != 1 {
		t.Fatalf("one scrape asked for %d scan results, want 1", n)
	}

	engine := &dockertest.Engine{}
	id := strings.Repeat("ab", 32)
	engine.Add(dockertest.Container{ID: id, State: "exited", Labels: map[string]string{stale.LabelInstanceID: "a"}, Created: t0})
	st := storetest.NewMem()
	st.Put(stale.Instance{ID: "a", ContainerID: id, CreatedAt: t0})
	// A cache TTL of zero and a clock that moves: any later Result is a new scan.
	now := t0
	scanner := scan.NewScanner(engine, st, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn,
		Threshold: time.Hour, Now: func() time.Time { now = now.Add(time.Millisecond); return now }}, MaxSnapshotAge: time.Minute},
		slog.New(slog.DiscardHandler))
	h = collector.NewHandler(scanner, prometheus.NewRegistry(), testenv.EngineName, collector.HandlerOpts{Timeout: time.Second}, slog.New(slog.DiscardHandler))
	_, body, _ := scrape(t, h, false)
	if engine.Lists != 1 || !strings.Contains(body, `stale_exporter_scan_success{docker_host="test-engine"} 1`) {
		t.Fatalf("one scrape made %d ContainerList calls, want 1:\n%s", engine.Lists, body)
	}
}
