package scan

import (
	"context"
	"errors"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// adopt creates the rows of the labelled containers the store lacks
// (--docker.adopt) and returns the inventory read again if it adopted any.
func (s *Scanner) adopt(ctx context.Context, inv store.Inventory, containers []stale.Container) (store.Inventory, error) {
	known := make(map[string]bool, len(inv.Instances))
	for _, in := range inv.Instances {
		known[in.ID] = true
	}
	adopted := 0
	for _, c := range containers {
		id := c.Labels[stale.LabelInstanceID]
		project, stage := c.Labels[stale.LabelProject], c.Labels[stale.LabelStage]
		if known[id] || project == "" || stage == "" || stale.ValidID(id) != nil || s.refused[c.ID] {
			continue
		}
		status := stale.StatusStopped
		if c.Running() {
			status = stale.StatusRunning
		}
		err := s.store.Adopt(ctx, store.Adoption{
			InstanceID: id, ProjectName: project, StageName: stage,
			ContainerID: c.ID, ImageTag: imageTag(c), Status: status, CreatedAt: c.Created,
		})
		if errors.Is(err, store.ErrAdoptionRefused) {
			// The platform will not take it (an id its column cannot hold,
			// a constraint of its own): said once, and the scan goes on.
			s.refused[c.ID] = true
			s.logger.Warn("container not adopted", "container_id", c.ID, "instance_id", id, "err", err)
			continue
		}
		if err != nil {
			return inv, err
		}
		s.logger.Info("adopted container", "container_id", c.ID, "instance_id", id, "project_name", project, "stage_name", stage)
		adopted++
	}
	if adopted == 0 {
		return inv, nil
	}
	return s.store.ReadInventory(ctx, s.cfg.Host)
}

// imageTag is an adopted instance's image tag: the platform's label, else
// the tag of the container's image reference.
func imageTag(c stale.Container) string {
	if tag := c.Labels[stale.LabelImageTag]; tag != "" {
		return tag
	}
	return docker.ImageTag(c.Image)
}
