package cleanup

import (
	"fmt"
	"strings"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// removedEvent is the event of a removal; rowKept says the platform pointed
// the row at another container meanwhile, so the row stayed; volumes are the
// anonymous volumes removed with the container.
func removedEvent(job store.Job, in stale.Instance, rowKept bool, volumes []string) store.Event {
	removed := job.TargetContainerID
	if removed == "" {
		removed = job.ContainerID
	}
	msg := fmt.Sprintf("removed stale container %s of %s", stale.ShortID(removed), describe(in))
	if len(volumes) > 0 {
		msg += fmt.Sprintf(" and its anonymous volumes %s", strings.Join(volumes, ", "))
	}
	if rowKept {
		msg += "; the instance names another container now, so its row is kept"
	}
	d := eventDetails(job, in, "")
	d["row_kept"] = rowKept
	d["volumes_removed"] = volumes
	return store.Event{Severity: store.SeverityInfo, Message: msg, ProjectID: in.ProjectID, InstanceID: job.InstanceID, Details: d}
}

// notRemovedEvent is the event of a job that removed nothing.
func notRemovedEvent(job store.Job, in stale.Instance, result store.JobResult, reason string) store.Event {
	severity := store.SeverityInfo
	if result == store.ResultFailed {
		severity = store.SeverityWarning
	}
	return store.Event{
		Severity:   severity,
		Message:    fmt.Sprintf("cleanup of container %s of %s %s: %s", stale.ShortID(job.ContainerID), describe(in), result, reason),
		ProjectID:  in.ProjectID,
		InstanceID: job.InstanceID,
		Details:    eventDetails(job, in, reason),
	}
}

func describe(in stale.Instance) string {
	if in.ProjectName == "" {
		return "instance " + in.ID
	}
	return fmt.Sprintf("%s/%s (%s)", in.ProjectName, in.StageName, in.ImageTag)
}

func eventDetails(job store.Job, in stale.Instance, reason string) map[string]any {
	d := map[string]any{
		"job_id": job.ID, "trigger": job.Trigger, "requested_by": job.RequestedBy,
		"container_id": job.ContainerID, "project_name": in.ProjectName, "stage_name": in.StageName,
		"image_tag": in.ImageTag,
	}
	if job.TargetContainerID != "" {
		d["target_container_id"] = job.TargetContainerID
	}
	if reason != "" {
		d["reason"] = reason
	}
	return d
}

// alertEvent is the warning recorded once per occurrence of an alert of
// this service's: its summary, or a sentence made of its labels.
func alertEvent(alert Alert, fingerprint string, cleanupRequested bool) store.Event {
	l := alert.Labels
	message := fmt.Sprintf("container %s of %s/%s (%s) is stale", stale.ShortID(l[stale.KeyContainerID]),
		l[stale.KeyProjectName], l[stale.KeyStageName], l[stale.KeyImageTag])
	if summary := alert.Annotations["summary"]; summary != "" {
		message = summary
	}
	details := map[string]any{"alertname": l["alertname"], "fingerprint": fingerprint, "starts_at": alert.StartsAt,
		"cleanup_requested": cleanupRequested}
	for _, k := range stale.InstanceKeys[1:] {
		details[k] = l[k]
	}
	return store.Event{Severity: store.SeverityWarning, Message: message, InstanceID: l[stale.KeyInstanceID], Details: details}
}
