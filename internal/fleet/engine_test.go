package fleet_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/fleet"
	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// The exporter's own Docker adapter, and its view, work against the
// simulated engine as against Docker: it is only a fair load if they do.
func TestAdapterOnTheSimulatedEngine(t *testing.T) {
	sim := fleet.NewEngine("sim-1")
	long := time.Now().Add(-48 * time.Hour)
	running, stopped, unlabelled := fleet.ID(), fleet.ID(), fleet.ID()
	sim.Add(fleet.Container{ID: running, Name: "a", Image: "web:pr-1", State: "running", Labels: map[string]string{stale.LabelInstanceID: "i1"}, Created: long, StartedAt: long})
	sim.Add(fleet.Container{ID: stopped, Name: "b", Image: "web:pr-2", State: "exited", Labels: map[string]string{stale.LabelInstanceID: "i2"}, Created: long, FinishedAt: long})
	sim.Add(fleet.Container{ID: unlabelled, Name: "c", Image: "db", State: "running", Created: long})
	sock := filepath.Join(t.TempDir(), "docker.sock")
	if err := sim.Serve(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	ctx := context.Background()
	engine, err := docker.Connect(ctx, "unix://"+sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	if name, err := engine.Name(ctx); err != nil || name != "sim-1" {
		t.Fatalf("name: %q %v", name, err)
	}
	list, err := engine.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %+v", err, list)
	}
	c, err := engine.Inspect(ctx, stopped[:12])
	if err != nil || !c.Found || c.State != "exited" || !c.FinishedAt.Equal(long) || c.Labels[stale.LabelInstanceID] != "i2" {
		t.Fatalf("inspect: %v %+v", err, c)
	}
	if size, err := engine.Size(ctx, stopped); err != nil || size != 4096 {
		t.Fatalf("size: %d %v", size, err)
	}
	if err := engine.Remove(ctx, running, true); !errors.Is(err, docker.ErrConflict) {
		t.Fatalf("remove a running container: %v", err)
	}

	changes := make(chan struct{}, 100)
	view := docker.NewView(engine, docker.ViewConfig{Resync: time.Hour, Ping: time.Hour, Changed: func() { changes <- struct{}{} }}, slog.New(slog.DiscardHandler))
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go view.Run(vctx)
	deadline := time.Now().Add(5 * time.Second)
	for !view.Live() {
		if time.Now().After(deadline) {
			t.Fatal("the view of the simulated engine did not go live")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// It dies, and is removed before any scan.
	sim.Toggle(running)
	for !viewHas(t, view, running, "exited") {
		if time.Now().After(deadline) {
			t.Fatal("the die did not reach the view")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := engine.Remove(ctx, running, true); err != nil {
		t.Fatal(err)
	}
	for {
		list, err := view.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removal did not reach the view: %+v", list)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := view.EndedAt(running); !ok {
		t.Error("the view does not remember when the removed container ended")
	}
	calls := sim.Calls()
	if calls["list"] != 2 || calls["events"] != 1 || calls["delete"] != 2 {
		t.Errorf("calls %v: want 2 lists (the adapter's, the view's), 1 event stream and 2 removals", calls)
	}
}

// viewHas reports whether the view holds the container in that state.
func viewHas(t *testing.T, v *docker.View, id, state string) bool {
	t.Helper()
	list, err := v.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == id {
			return c.State == state
		}
	}
	return false
}
