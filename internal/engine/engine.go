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

// Lister is the one Docker call Claimants needs.
type Lister interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
}

// Claimants lists the full ids of every container, running or not, that
// carries the label naming instanceID, within timeout.
func Claimants(ctx context.Context, docker Lister, instanceID string, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := docker.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", stale.LabelInstanceID+"="+instanceID),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers of instance %s: %w", instanceID, err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		// The engine's filter matches the label's value exactly; checked
		// again, as a filter is only as good as the engine applying it.
		if c.Labels[stale.LabelInstanceID] == instanceID {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
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
	c := stale.Container{ID: res.ID, Found: true}
	if res.Config != nil {
		c.Labels = res.Config.Labels
	}
	var err error
	if c.Created, err = parseDockerTime("Created", res.Created); err != nil {
		return c, err
	}
	if res.State == nil {
		return c, nil
	}
	c.State = string(res.State.Status)
	if c.StartedAt, err = parseDockerTime("StartedAt", res.State.StartedAt); err != nil {
		return c, err
	}
	c.FinishedAt, err = parseDockerTime("FinishedAt", res.State.FinishedAt)
	return c, err
}
