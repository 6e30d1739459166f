// Package engine reads what the Docker engine says of one container into the
// domain's view of it, within a timeout: the one inspect the scan and the
// cleanup re-check share.
package engine

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// Inspector is the one Docker call Inspect needs.
type Inspector interface {
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Inspect reads a container's live state within timeout. A container Docker
// does not know is returned as not Found, without error.
func Inspect(ctx context.Context, docker Inspector, id string, timeout time.Duration) (stale.Container, error) {
	if id == "" {
		return stale.Container{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return stale.Container{}, nil
	}
	if err != nil {
		return stale.Container{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	return containerFromInspect(res.Container)
}

// FinishedAt reads State.FinishedAt; Docker writes a zero year for a
// container that never stopped.
func FinishedAt(state *container.State) (time.Time, error) {
	if state == nil {
		return time.Time{}, nil
	}
	return parseDockerTime("FinishedAt", state.FinishedAt)
}

// parseDockerTime reads one of Docker's RFC 3339 times; empty and the zero
// year Docker writes for "never" are the zero time.
func parseDockerTime(field, raw string) (time.Time, error) {
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %s %q: %w", field, raw, err)
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t, nil
}

func containerFromInspect(res container.InspectResponse) (stale.Container, error) {
	c := stale.Container{Found: true}
	if res.Config != nil {
		c.Labels = res.Config.Labels
	}
	if res.State != nil {
		c.State = string(res.State.Status)
	}
	created, err := parseDockerTime("Created", res.Created)
	if err != nil {
		return c, err
	}
	c.Created = created
	finished, err := FinishedAt(res.State)
	c.FinishedAt = finished
	return c, err
}
