// Package enginefake is an in-memory Docker engine for the unit tests of
// pure logic (scan and cleanup decisions) that must run without a daemon.
// The tests on a real engine remain the proof that the product works.
package enginefake

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Container is one container of the fake engine.
type Container struct {
	ID, Name, Image, State string
	Labels                 map[string]string
	Created, StartedAt     time.Time
	FinishedAt             time.Time
}

// Engine answers list, inspect and remove like the Docker Engine API does.
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
}

// Add puts a container on the engine.
func (e *Engine) Add(c Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers = append(e.containers, &c)
}

// SetState changes a container's state.
func (e *Engine) SetState(id, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.find(id); c != nil {
		c.State = state
	}
}

// Exists reports whether the engine still has the container.
func (e *Engine) Exists(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.find(id) != nil
}

var errDown = fmt.Errorf("Cannot connect to the Docker daemon: %w", cerrdefs.ErrUnavailable)

// find resolves a reference by full id, name or id prefix, as the engine does.
func (e *Engine) find(ref string) *Container {
	for _, c := range e.containers {
		if c.ID == ref || c.Name == ref || (len(ref) >= 1 && strings.HasPrefix(c.ID, ref)) {
			return c
		}
	}
	return nil
}

// ContainerList lists the containers carrying the filter's label keys.
func (e *Engine) ContainerList(_ context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Lists++
	if e.Down {
		return client.ContainerListResult{}, errDown
	}
	var out client.ContainerListResult
	for _, c := range e.containers {
		keep := true
		for filter := range o.Filters["label"] {
			key, value, exact := strings.Cut(filter, "=")
			if got, ok := c.Labels[key]; !ok || (exact && got != value) {
				keep = false
			}
		}
		if keep {
			out.Items = append(out.Items, container.Summary{ID: c.ID, Names: []string{"/" + c.Name}, Image: c.Image,
				Created: c.Created.Unix(), Labels: c.Labels, State: container.ContainerState(c.State)})
		}
	}
	return out, nil
}

// ContainerInspect describes one container, or answers 404.
func (e *Engine) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Inspects++
	if e.Down {
		return client.ContainerInspectResult{}, errDown
	}
	c := e.find(id)
	if c == nil {
		return client.ContainerInspectResult{}, fmt.Errorf("No such container: %s: %w", id, cerrdefs.ErrNotFound)
	}
	return client.ContainerInspectResult{Container: container.InspectResponse{
		ID: c.ID, Name: "/" + c.Name, Created: c.Created.Format(time.RFC3339Nano),
		State: &container.State{Status: container.ContainerState(c.State), Running: c.State == "running",
			StartedAt: dockerTime(c.StartedAt), FinishedAt: dockerTime(c.FinishedAt)},
		Config: &container.Config{Labels: c.Labels},
	}}, nil
}

// dockerTime writes a time as the engine does, the zero year for never.
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.Format(time.RFC3339Nano)
}

// ContainerRemove removes a container that does not run (never forced).
func (e *Engine) ContainerRemove(_ context.Context, id string, _ client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Removes++
	if e.Down {
		return client.ContainerRemoveResult{}, errDown
	}
	c := e.find(id)
	if c == nil {
		return client.ContainerRemoveResult{}, fmt.Errorf("No such container: %s: %w", id, cerrdefs.ErrNotFound)
	}
	if c.State == "running" {
		return client.ContainerRemoveResult{}, fmt.Errorf("cannot remove container %s: container is running: %w", id, cerrdefs.ErrConflict)
	}
	for i, x := range e.containers {
		if x == c {
			e.containers = append(e.containers[:i], e.containers[i+1:]...)
		}
	}
	if e.LoseRemoveAnswer {
		return client.ContainerRemoveResult{}, fmt.Errorf("error during connect: unexpected EOF")
	}
	return client.ContainerRemoveResult{}, nil
}
