// Package dockertest is an in-memory Docker engine in the adapter's terms
// (internal/docker), for the unit tests of pure logic (scan and cleanup
// decisions) that must run without a daemon. The contract test of
// internal/docker runs the same scenario on it and on a real engine; the
// tests on a real engine remain the proof that the product works.
package dockertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// Container is one container of the fake engine.
type Container struct {
	ID, Name, Image, State string
	Labels                 map[string]string
	Created, StartedAt     time.Time
	FinishedAt             time.Time
	// Size is its writable layer; Volumes are mounted into it (their
	// sizes in the engine's VolumeBytes).
	Size    int64
	Volumes []stale.Volume
}

// Engine answers list, inspect and remove as internal/docker's Engine does.
type Engine struct {
	mu         sync.Mutex
	containers []*Container
	// Lists, Inspects and Removes count the calls.
	Lists, Inspects, Removes int
	// Down makes every call fail as an unreachable engine does.
	Down bool
	// LoseRemoveAnswer removes the container but answers an error, as a
	// connection cut after the engine acted does.
	LoseRemoveAnswer bool
	// VolumeBytes are the volumes of the engine and their sizes; Measures
	// counts the measurements (Size and VolumeSizes).
	VolumeBytes map[string]int64
	Measures    int
}

// Add puts a container on the engine, and its volumes (of no size unless
// VolumeBytes says one).
func (e *Engine) Add(c Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers = append(e.containers, &c)
	if e.VolumeBytes == nil {
		e.VolumeBytes = map[string]int64{}
	}
	for _, v := range c.Volumes {
		if _, ok := e.VolumeBytes[v.Name]; !ok {
			e.VolumeBytes[v.Name] = 0
		}
	}
}

// SetState changes a container's state.
func (e *Engine) SetState(id, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.find(id); c != nil {
		c.State = state
	}
}

// Stop makes a container exited at a time, as docker stop does.
func (e *Engine) Stop(id string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.find(id); c != nil {
		c.State, c.FinishedAt = "exited", at
	}
}

// Exists reports whether the engine still has the container.
func (e *Engine) Exists(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.find(id) != nil
}

var errDown = errors.New("Cannot connect to the Docker daemon (fake engine down)")

// find resolves a reference by full id, name or id prefix, as the engine does.
func (e *Engine) find(ref string) *Container {
	for _, c := range e.containers {
		if c.ID == ref || c.Name == ref || (ref != "" && strings.HasPrefix(c.ID, ref)) {
			return c
		}
	}
	return nil
}

func (c *Container) domain() stale.Container {
	return stale.Container{ID: c.ID, Found: true, State: c.State, Image: c.Image, Labels: c.Labels, Created: c.Created,
		StartedAt: c.StartedAt, FinishedAt: c.FinishedAt, Volumes: c.Volumes}
}

// List lists the containers carrying the instance label, without run times
// (as the engine's list does).
func (e *Engine) List(context.Context) ([]stale.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Lists++
	if e.Down {
		return nil, fmt.Errorf("list containers: %w", errDown)
	}
	var out []stale.Container
	for _, c := range e.containers {
		if _, ok := c.Labels[stale.LabelInstanceID]; ok {
			d := c.domain()
			d.StartedAt, d.FinishedAt, d.Volumes = time.Time{}, time.Time{}, nil
			d.Created = d.Created.Truncate(time.Second) // the list says seconds
			out = append(out, d)
		}
	}
	return out, nil
}

// Labelled lists the containers carrying the label naming instanceID.
func (e *Engine) Labelled(_ context.Context, instanceID string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Lists++
	if e.Down {
		return nil, fmt.Errorf("list containers of instance %s: %w", instanceID, errDown)
	}
	ids := []string{}
	for _, c := range e.containers {
		if c.Labels[stale.LabelInstanceID] == instanceID {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
}

// Inspect describes one container, or answers not Found.
func (e *Engine) Inspect(_ context.Context, ref string) (stale.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ref == "" {
		return stale.Container{}, nil
	}
	e.Inspects++
	if e.Down {
		return stale.Container{}, fmt.Errorf("inspect container %s: %w", ref, errDown)
	}
	c := e.find(ref)
	if c == nil {
		return stale.Container{}, nil
	}
	return c.domain(), nil
}

// Remove removes a container that does not run (never forced), with its
// anonymous volumes when volumes.
func (e *Engine) Remove(_ context.Context, id string, volumes bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Removes++
	if e.Down {
		return fmt.Errorf("remove container %s: %w", id, errDown)
	}
	c := e.find(id)
	if c == nil {
		return fmt.Errorf("remove container %s: %w", id, docker.ErrNotFound)
	}
	if c.State == "running" {
		return fmt.Errorf("remove container %s: %w", id, docker.ErrConflict)
	}
	for i, x := range e.containers {
		if x == c {
			e.containers = append(e.containers[:i], e.containers[i+1:]...)
		}
	}
	for _, v := range c.Volumes {
		if volumes && v.Anonymous {
			delete(e.VolumeBytes, v.Name)
		}
	}
	if e.LoseRemoveAnswer {
		return fmt.Errorf("remove container %s: error during connect: unexpected EOF", id)
	}
	return nil
}

// VolumesGone returns which of the named volumes the engine no longer has.
func (e *Engine) VolumesGone(_ context.Context, names []string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var gone []string
	for _, n := range names {
		if _, ok := e.VolumeBytes[n]; !ok {
			gone = append(gone, n)
		}
	}
	return gone, nil
}

// Size is a container's writable layer.
func (e *Engine) Size(_ context.Context, id string) (int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Measures++
	c := e.find(id)
	if c == nil {
		return 0, fmt.Errorf("measure container %s: no such container", id)
	}
	return c.Size, nil
}

// VolumeSizes are the engine's volumes and their sizes.
func (e *Engine) VolumeSizes(context.Context) (map[string]int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Measures++
	out := make(map[string]int64, len(e.VolumeBytes))
	for n, b := range e.VolumeBytes {
		out[n] = b
	}
	return out, nil
}

// Local connects the adapter to the engine tests run against (the local
// socket, or DOCKER_HOST), until the test ends: a failure in CI, a skip
// elsewhere when there is none.
func Local(tb testing.TB) *docker.Engine {
	tb.Helper()
	return Connect(tb, testenv.Docker(tb).DaemonHost())
}

// Connect connects the adapter to the engine at addr (a test's front of the
// real engine, an engine of its own), with a 10s timeout, until the test ends.
func Connect(tb testing.TB, addr string) *docker.Engine {
	tb.Helper()
	e, err := docker.Connect(context.Background(), addr, 10*time.Second)
	if err != nil {
		tb.Fatalf("connect to the Docker engine at %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}
