package docker_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// front is the real engine behind a proxy that counts the lists, and can
// cut the event stream, or hold it open and silent.
type front struct {
	addr  string
	lists atomic.Int64
	mute  atomic.Bool
	mu    sync.Mutex
	cut   []context.CancelFunc
}

func newFront(t *testing.T) *front {
	f := &front{}
	f.addr = testenv.DockerProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			f.lists.Add(1)
		case strings.HasSuffix(r.URL.Path, "/events") && f.mute.Load():
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return true
		case strings.HasSuffix(r.URL.Path, "/events"):
			ctx, cancel := context.WithCancel(r.Context())
			f.mu.Lock()
			f.cut = append(f.cut, cancel)
			f.mu.Unlock()
			testenv.EngineServes(w, r.WithContext(ctx))
			return true
		}
		return false
	})
	return f
}

// cutStreams cuts the event streams open now.
func (f *front) cutStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cancel := range f.cut {
		cancel()
	}
	f.cut = nil
}

// startView keeps a view of the engine behind f until the test ends.
func startView(t *testing.T, f *front, cfg docker.ViewConfig) *docker.View {
	t.Helper()
	engine, err := docker.Connect(context.Background(), f.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	if cfg.Resync == 0 {
		cfg.Resync = time.Hour
	}
	if cfg.Ping == 0 {
		cfg.Ping = time.Hour
	}
	view := docker.NewView(engine, cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); view.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the view to be live", 10*time.Second, view.Live)
	return view
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("waited %s for %s", timeout, what)
	return 0
}

// find is the container of the view's list with that id.
func find(t *testing.T, v *docker.View, id string) (stale.Container, bool) {
	t.Helper()
	list, err := v.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(c stale.Container) bool { return c.ID == id })
	if i < 0 {
		return stale.Container{}, false
	}
	return list[i], true
}

func labels() map[string]string {
	return map[string]string{stale.LabelInstanceID: "view-" + time.Now().Format("150405.000000000")}
}

// Events keep the view without a list: created, started, stopped (with
// the engine's own end time, within a second of the die) and removed.
func TestViewFollowsEvents(t *testing.T) {
	cli := testenv.Docker(t)
	f := newFront(t)
	view := startView(t, f, docker.ViewConfig{})
	lists := f.lists.Load()
	ctx := context.Background()

	id := testenv.NewContainer(t, cli, testenv.ContainerSpec{Labels: labels()})
	waitUntil(t, "the created container", 5*time.Second, func() bool { c, ok := find(t, view, id); return ok && c.State == "created" })
	if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the started container", 5*time.Second, func() bool { c, _ := find(t, view, id); return c.Running() })
	if _, err := cli.ContainerKill(ctx, id, client.ContainerKillOptions{}); err != nil {
		t.Fatal(err)
	}
	var stopped stale.Container
	waitUntil(t, "the died container", 5*time.Second, func() bool { stopped, _ = find(t, view, id); return stopped.State == "exited" })
	lag := time.Since(stopped.FinishedAt)
	t.Logf("a die is in the view %s after the engine's end time", lag.Round(time.Millisecond))
	if stopped.FinishedAt.IsZero() || lag > time.Second {
		t.Errorf("died container: FinishedAt %v, %s ago; want the engine's, within a second", stopped.FinishedAt, lag)
	}
	if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the removed container to go", 5*time.Second, func() bool { _, ok := find(t, view, id); return !ok })
	if end, ok := view.EndedAt(id); !ok || !end.Equal(stopped.FinishedAt) {
		t.Errorf("removed container ended at %v %v, want %v", end, ok, stopped.FinishedAt)
	}
	if got := f.lists.Load() - lists; got != 0 {
		t.Errorf("the view listed the engine %d times while its events flowed; want 0", got)
	}
}

// A cut stream is opened again from the last event seen, and the view
// listed again: what changed while it was down is there, and not counted
// as a repair (only a resync's differences are).
func TestViewAcrossACutStream(t *testing.T) {
	cli := testenv.Docker(t)
	f := newFront(t)
	view := startView(t, f, docker.ViewConfig{})
	ctx := context.Background()
	running := testenv.NewContainer(t, cli, testenv.ContainerSpec{Labels: labels(), Start: true})
	waitUntil(t, "the running container", 5*time.Second, func() bool { c, _ := find(t, view, running); return c.Running() })

	f.cutStreams()
	waitUntil(t, "the view to see the cut", 5*time.Second, func() bool { return !view.Live() })
	// Down: the list is the engine's.
	before := f.lists.Load()
	if _, ok := find(t, view, running); !ok || f.lists.Load() == before {
		t.Fatalf("while the stream is down, List did not list the engine")
	}
	if _, err := cli.ContainerKill(ctx, running, client.ContainerKillOptions{}); err != nil {
		t.Fatal(err)
	}
	made := testenv.NewContainer(t, cli, testenv.ContainerSpec{Labels: labels()})
	waitUntil(t, "the view to be live again", 10*time.Second, view.Live)
	waitUntil(t, "what changed while it was down", 5*time.Second, func() bool {
		c, _ := find(t, view, running)
		_, ok := find(t, view, made)
		return c.State == "exited" && ok
	})
	if got := metric(t, view, "stale_exporter_docker_resync_repairs_total"); got != 0 {
		t.Errorf("a reconnect counted %v repairs", got)
	}
	if got := metric(t, view, "stale_exporter_docker_event_stream_reconnects_total"); got < 1 {
		t.Errorf("reconnects: %v", got)
	}
}

// A stream that stays open and says nothing loses events: the resync finds
// the difference, repairs the view and counts it.
func TestViewResyncRepairsAMissedEvent(t *testing.T) {
	cli := testenv.Docker(t)
	f := newFront(t)
	f.mute.Store(true)
	view := startView(t, f, docker.ViewConfig{Resync: time.Second})
	id := testenv.NewContainer(t, cli, testenv.ContainerSpec{Labels: labels()})
	took := waitUntil(t, "the resync to bring the container", 10*time.Second, func() bool { _, ok := find(t, view, id); return ok })
	t.Logf("repaired %s after the missed event", took.Round(time.Millisecond))
	if got := metric(t, view, "stale_exporter_docker_resync_repairs_total"); got < 1 {
		t.Errorf("repairs: %v, want at least 1", got)
	}
}

// An engine that stops answering takes the view down (its ping fails),
// and the list then fails: no scan judges on old news.
func TestViewOfAnEngineThatStopsAnswering(t *testing.T) {
	testenv.Docker(t)
	var dead atomic.Bool
	addr := testenv.DockerProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if dead.Load() && !strings.HasSuffix(r.URL.Path, "/events") {
			http.Error(w, "engine gone", http.StatusInternalServerError)
			return true
		}
		return false
	})
	f := &front{addr: addr}
	view := startView(t, f, docker.ViewConfig{Ping: 100 * time.Millisecond})
	dead.Store(true)
	waitUntil(t, "the view to go down", 5*time.Second, func() bool { return !view.Live() })
	if _, err := view.List(context.Background()); err == nil {
		t.Fatal("the view of an engine that does not answer listed without error")
	}
}

func metric(t *testing.T, v *docker.View, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(v); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// dockerd restarted under the view: the containers it stopped on the way
// down are exited in the view once it answers again, with no event of it
// needed, and one made after the restart arrives by events again.
func TestViewAcrossAnEngineRestart(t *testing.T) {
	engine := testenv.StartEngine(t, "viewrestart")
	running := testenv.NewContainer(t, engine.Client, testenv.ContainerSpec{Labels: labels(), Start: true})
	view := startView(t, &front{addr: engine.Host}, docker.ViewConfig{})
	waitUntil(t, "the running container", 5*time.Second, func() bool { c, _ := find(t, view, running); return c.Running() })

	engine.Stop()
	waitUntil(t, "the view to see the engine go", 10*time.Second, func() bool { return !view.Live() })
	if _, err := view.List(context.Background()); err == nil {
		t.Fatal("the view of a stopped engine listed without error")
	}
	engine.Start()
	waitUntil(t, "the view to be live again", 40*time.Second, view.Live)
	waitUntil(t, "the container the restart stopped", 5*time.Second, func() bool { c, ok := find(t, view, running); return ok && !c.Running() })
	made := testenv.NewContainer(t, engine.Client, testenv.ContainerSpec{Labels: labels()})
	waitUntil(t, "a container made after the restart", 5*time.Second, func() bool { _, ok := find(t, view, made); return ok })
}
