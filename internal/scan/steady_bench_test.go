package scan_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
)

// BenchmarkSteadyScrape measures a steady-state scrape with the events
// path against 1,000 real containers (100 running) and 10,000 instance
// rows, beside the bare labelled list of the same engine, in one run: the
// scrape of a current scan (the view and the feed live and unchanged), and
// a scrape with a fresh scan from them each time. It reports the scrape's share of
// the list, the Docker calls and the store reads a scrape made, and the
// heap the scanner, the view and the feed hold.
func BenchmarkSteadyScrape(b *testing.B) {
	cli := testenv.Docker(b)
	ids := createBenchContainers(b, cli)
	db := benchStore(b, ids, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	logger := slog.New(slog.DiscardHandler)

	var calls atomic.Int64
	addr := testenv.DockerProxy(b, func(http.ResponseWriter, *http.Request) bool { calls.Add(1); return false })
	engine, err := docker.Connect(ctx, addr, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = engine.Close() })
	view := docker.NewView(engine, docker.ViewConfig{Resync: time.Hour, Ping: time.Hour}, logger)
	go view.Run(ctx)
	feed := store.NewFeed(db.Store, store.FeedConfig{Resync: time.Hour, Heartbeat: time.Hour, Ping: time.Hour, Timeout: 5 * time.Second}, logger)
	go feed.Run(ctx)
	for !view.Live() || !feed.Live() {
		time.Sleep(10 * time.Millisecond)
	}
	scanner := scan.NewScanner(view, store.Fed{Store: db.Store, Feed: feed}, scan.Config{
		Config:         stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: time.Hour},
		MaxSnapshotAge: time.Minute, AliveWriteInterval: time.Hour,
		Live: func() bool { return view.Live() && feed.Live() }, LiveTTL: time.Hour}, logger)
	warm(b, scanner)
	// The first reads register the engine, which is announced: let the
	// feed settle.
	time.Sleep(500 * time.Millisecond)
	scanner.Rescan(ctx)
	scanner.Rescan(ctx)

	var list time.Duration
	b.Run("bare-list", func(b *testing.B) {
		for b.Loop() {
			if _, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", stale.LabelInstanceID)}); err != nil {
				b.Fatal(err)
			}
		}
		list = b.Elapsed() / time.Duration(b.N)
	})
	// A steady scrape: the inputs live and unchanged, the scan current,
	// its rendering shared; and the worst case, a fresh scan on every
	// scrape (what a change brings).
	for name, results := range map[string]collector.Results{"scrape": scanner, "scrape-rescan": rescans{scanner}} {
		b.Run(name, func(b *testing.B) {
			handler := collector.NewHandler(results, prometheus.NewRegistry(), testenv.EngineName, collector.HandlerOpts{Timeout: time.Minute}, logger)
			scrape := func() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("scrape: %d", rec.Code)
				}
			}
			scrape() // the first scrape of a scan renders it
			calls0, reads0 := calls.Load(), feedReads(b, feed)
			for b.Loop() {
				scrape()
			}
			perScrape := b.Elapsed() / time.Duration(b.N)
			if list > 0 {
				b.ReportMetric(float64(perScrape)/float64(list), "x-list")
			}
			b.ReportMetric(float64(calls.Load()-calls0)/float64(b.N), "docker-calls/op")
			b.ReportMetric((feedReads(b, feed)-reads0)/float64(b.N), "store-reads/op")
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "heap-MiB")
		})
	}
}

// rescans answers every scrape with a fresh scan.
type rescans struct{ s *scan.Scanner }

func (r rescans) Result(ctx context.Context) scan.Result { return r.s.Rescan(ctx) }

// feedReads are the feed's full reads and rows read again, summed: each
// is a statement.
func feedReads(b *testing.B, f *store.Feed) float64 {
	b.Helper()
	families, err := registry(f).Gather()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, fam := range families {
		switch fam.GetName() {
		case "stale_exporter_store_full_reads_total", "stale_exporter_store_changed_rows_read_total":
			total += fam.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return total
}
