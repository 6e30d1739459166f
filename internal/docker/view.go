package docker

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// ViewConfig tunes a View.
type ViewConfig struct {
	// Resync is how often the view is listed again in full, to repair
	// whatever events it missed.
	Resync time.Duration
	// Ping is how often the engine is asked whether it still answers while
	// its event stream is quiet: a frozen engine keeps a stream open.
	Ping time.Duration
	// Changed is called after an event changed the view.
	Changed func()
}

// maxBackoff bounds the wait between two attempts to open the stream.
const maxBackoff = 30 * time.Second

// View is the labelled containers of one engine kept in memory, the way an
// informer keeps Kubernetes objects: listed once, then kept by the engine's
// container events, and listed again every Resync to repair anything
// missed (each difference found is counted: events were lost). While the
// stream is down its List lists the engine, as a scan without a view
// does; a list that fails then fails the scan (docker_up 0), so a view
// that cannot be kept never judges on old news.
//
// Everything else (inspect, sizes, and every call of a removal) goes to the
// engine itself: the view is never the last word before a removal.
type View struct {
	*Engine
	cfg    ViewConfig
	logger *slog.Logger

	mu         sync.Mutex
	containers map[string]stale.Container
	live       bool
	// last is the engine's time of the latest event applied: a stream
	// opened again starts there, so that nothing is missed across it.
	last time.Time
	// ended is when each container destroyed since the last resync had
	// stopped, as its die event's inspect said: a container that dies and
	// is removed between two scans still has an exact end.
	ended map[string]time.Time

	events, repairs, reconnects, fallbacks atomic.Uint64
}

// NewView returns the view of engine; Run keeps it.
func NewView(engine *Engine, cfg ViewConfig, logger *slog.Logger) *View {
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	return &View{Engine: engine, cfg: cfg, logger: logger, containers: map[string]stale.Container{}, ended: map[string]time.Time{}}
}

// List answers the labelled containers from memory while the event stream
// is live, else from the engine.
func (v *View) List(ctx context.Context) ([]stale.Container, error) {
	v.mu.Lock()
	if v.live {
		out := slices.Collect(maps.Values(v.containers))
		v.mu.Unlock()
		return out, nil
	}
	v.mu.Unlock()
	v.fallbacks.Add(1)
	return v.Engine.List(ctx)
}

// Live reports whether the view is kept by the event stream now.
func (v *View) Live() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.live
}

// Run keeps the view until ctx ends: it opens the event stream, lists,
// applies events, and opens the stream again (1s, doubling to 30s) after it
// breaks.
func (v *View) Run(ctx context.Context) {
	backoff := time.Second
	for {
		wasLive, err := v.watch(ctx)
		v.setLive(false)
		// What was read from it may be old news now: the next scan reads
		// the source itself.
		v.cfg.Changed()
		if ctx.Err() != nil {
			return
		}
		if wasLive {
			backoff = time.Second
		}
		v.reconnects.Add(1)
		v.logger.Warn("Docker event stream down: scans list the engine until it is back", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// watch opens the stream, then lists (an event after the list is in the
// stream, one before it in the list; one in both is applied twice, which
// changes nothing), then applies events until the stream or the engine
// fails. It reports whether the view went live.
func (v *View) watch(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := v.Engine.Events(ctx, v.lastEvent())
	if err := v.relist(ctx, false); err != nil {
		return false, err
	}
	v.setLive(true)
	v.cfg.Changed()
	resync := time.NewTicker(v.cfg.Resync)
	defer resync.Stop()
	ping := time.NewTicker(v.cfg.Ping)
	defer ping.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if err := <-errs; err != nil {
					return true, err
				}
				return true, errStreamClosed
			}
			if err := v.apply(ctx, ev); err != nil {
				return true, err
			}
		case <-resync.C:
			if err := v.relist(ctx, true); err != nil {
				return true, err
			}
		case <-ping.C:
			if err := v.Engine.Ping(ctx); err != nil {
				return true, err
			}
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

// relist lists the engine and makes the view what it says, keeping the run
// times an event's inspect gave a container whose state did not change. A
// resync counts the differences it repaired.
func (v *View) relist(ctx context.Context, resync bool) error {
	listed, err := v.Engine.List(ctx)
	if err != nil {
		return err
	}
	next := make(map[string]stale.Container, len(listed))
	v.mu.Lock()
	defer v.mu.Unlock()
	repaired := 0
	for _, c := range listed {
		old, ok := v.containers[c.ID]
		switch {
		case !ok:
			repaired++
		case old.State != c.State:
			repaired++
		default:
			c.StartedAt, c.FinishedAt, c.Volumes = old.StartedAt, old.FinishedAt, old.Volumes
		}
		next[c.ID] = c
	}
	for id := range v.containers {
		if _, ok := next[id]; !ok {
			repaired++
		}
	}
	v.containers = next
	if resync {
		v.ended = map[string]time.Time{}
	}
	if resync && repaired > 0 {
		v.repairs.Add(uint64(repaired))
		v.logger.Warn("Docker resync repaired the view: events were missed", "differences", repaired)
	}
	return nil
}

// apply brings one container up to date with the engine after an event:
// inspected, so that its state and run times are the engine's, not guessed
// from the event; gone when destroyed or not found.
func (v *View) apply(ctx context.Context, ev Event) error {
	var c stale.Container
	if ev.Action != "destroy" {
		var err error
		if c, err = v.Engine.Inspect(ctx, ev.ContainerID); err != nil {
			return err
		}
	}
	v.mu.Lock()
	if c.Found && c.Labels[stale.LabelInstanceID] != "" {
		v.containers[c.ID] = c
	} else {
		if old, ok := v.containers[ev.ContainerID]; ok && !old.FinishedAt.IsZero() && !old.Running() {
			v.ended[ev.ContainerID] = old.FinishedAt
		}
		delete(v.containers, ev.ContainerID)
	}
	if ev.Time.After(v.last) {
		v.last = ev.Time
	}
	v.mu.Unlock()
	v.events.Add(1)
	v.cfg.Changed()
	return nil
}

// EndedAt says when a container destroyed since the last resync had
// stopped, if the view saw it stopped.
func (v *View) EndedAt(id string) (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.ended[id]
	return t, ok
}

func (v *View) setLive(live bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.live = live
}

func (v *View) lastEvent() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last
}

var (
	viewLiveDesc = prometheus.NewDesc("stale_exporter_docker_events_live",
		"1 while the view of Docker is kept by its event stream; 0 while scans list the engine.", nil, nil)
	viewEventsDesc = prometheus.NewDesc("stale_exporter_docker_events_total",
		"Container events of labelled containers applied to the view.", nil, nil)
	viewRepairsDesc = prometheus.NewDesc("stale_exporter_docker_resync_repairs_total",
		"Differences a periodic full list found in the view: events that were missed.", nil, nil)
	viewReconnectsDesc = prometheus.NewDesc("stale_exporter_docker_event_stream_reconnects_total",
		"Times the Docker event stream broke and was opened again.", nil, nil)
	viewFallbacksDesc = prometheus.NewDesc("stale_exporter_docker_list_fallbacks_total",
		"Scans that listed the engine because the event stream was down.", nil, nil)
)

// Describe and Collect export the view's own health.
func (v *View) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{viewLiveDesc, viewEventsDesc, viewRepairsDesc, viewReconnectsDesc, viewFallbacksDesc} {
		ch <- d
	}
}

func (v *View) Collect(ch chan<- prometheus.Metric) {
	live := 0.0
	if v.Live() {
		live = 1
	}
	ch <- prometheus.MustNewConstMetric(viewLiveDesc, prometheus.GaugeValue, live)
	ch <- prometheus.MustNewConstMetric(viewEventsDesc, prometheus.CounterValue, float64(v.events.Load()))
	ch <- prometheus.MustNewConstMetric(viewRepairsDesc, prometheus.CounterValue, float64(v.repairs.Load()))
	ch <- prometheus.MustNewConstMetric(viewReconnectsDesc, prometheus.CounterValue, float64(v.reconnects.Load()))
	ch <- prometheus.MustNewConstMetric(viewFallbacksDesc, prometheus.CounterValue, float64(v.fallbacks.Load()))
}

// errStreamClosed: the stream ended without saying why.
var errStreamClosed = errors.New("docker event stream closed")
