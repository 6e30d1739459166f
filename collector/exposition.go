package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/docker-watcher/stale-exporter/internal/scan"
)

// HandlerOpts tunes the /metrics handler.
type HandlerOpts struct {
	// MaxRequests bounds concurrent scrapes; beyond it a scrape gets 503.
	// 0 means no bound.
	MaxRequests int
	// Timeout bounds how long a scrape waits for a scan.
	Timeout time.Duration
}

// Results gives the outcome of the latest scan; internal/scan's Scanner
// does, reusing a recent scan or sharing one in progress.
type Results interface {
	Result(ctx context.Context) scan.Result
}

// Handler serves /metrics. A scrape asks for one scan result and renders
// that result (through a Collector of it) with the rest of the registry: the
// gauges and the scan's self-metrics come from the same scan, and a scrape
// never starts a second one. The exposition is rendered once per scan, plain
// and gzipped, and every scrape of that scan is sent the same bytes: memory
// does not grow with the number of scrapers. The trade-off: between scans (at
// most the cache TTL) the process and cleanup metrics are those of the
// render, not of the scrape.
type Handler struct {
	results    Results
	gatherer   prometheus.Gatherer
	dockerHost string
	opts       HandlerOpts
	logger     *slog.Logger
	inflight   chan struct{}

	mu       sync.Mutex
	rendered *exposition
}

// exposition is one rendering of the registry.
type exposition struct {
	seq        uint64
	text, gzip []byte
}

// NewHandler returns the /metrics handler over the scans of dockerHost's
// engine and the registry of the exporter's other metrics.
func NewHandler(results Results, gatherer prometheus.Gatherer, dockerHost string, opts HandlerOpts, logger *slog.Logger) *Handler {
	h := &Handler{results: results, gatherer: gatherer, dockerHost: dockerHost, opts: opts, logger: logger}
	if opts.MaxRequests > 0 {
		h.inflight = make(chan struct{}, opts.MaxRequests)
	}
	return h
}

var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.inflight != nil {
		select {
		case h.inflight <- struct{}{}:
			defer func() { <-h.inflight }()
		default:
			http.Error(w, fmt.Sprintf("limit of concurrent scrapes reached (%d), try again later", cap(h.inflight)),
				http.StatusServiceUnavailable)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	exp := h.exposition(h.results.Result(ctx))

	w.Header().Set("Content-Type", string(textFormat))
	w.Header().Add("Vary", "Accept-Encoding")
	body := exp.text
	if acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		body = exp.gzip
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if _, err := w.Write(body); err != nil {
		h.logger.Debug("write metrics", "err", err)
	}
}

// exposition returns the rendering of a scan result, rendering it if it is
// the first scrape of that scan; concurrent first scrapes wait for one render.
func (h *Handler) exposition(r scan.Result) *exposition {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rendered != nil && h.rendered.seq == r.Seq {
		return h.rendered
	}
	scanned := prometheus.NewRegistry()
	scanned.MustRegister(New(r, h.dockerHost))
	families, err := prometheus.Gatherers{h.gatherer, scanned}.Gather()
	if err != nil {
		// As promhttp's ContinueOnError: serve what could be gathered.
		h.logger.Error("gather metrics", "err", err)
	}
	var text bytes.Buffer
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
			h.logger.Error("encode metrics", "family", f.GetName(), "err", err)
		}
	}
	var zipped bytes.Buffer
	// The fastest level: an exposition of thousands of instances is
	// compressed on every scan, and speed matters more than a few bytes.
	zw, _ := gzip.NewWriterLevel(&zipped, gzip.BestSpeed)
	_, _ = zw.Write(text.Bytes()) // writes to a bytes.Buffer do not fail
	_ = zw.Close()
	h.rendered = &exposition{seq: r.Seq, text: text.Bytes(), gzip: zipped.Bytes()}
	return h.rendered
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
