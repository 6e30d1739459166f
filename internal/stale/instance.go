package stale

import "time"

// The names that identify an instance everywhere outside Go: the labels of
// the gauges (and so of the alerts built on them), the webhook's reading of
// those alerts, and the details of event_log rows.
const (
	KeyInstanceID  = "instance_id"
	KeyProjectName = "project_name"
	KeyStageName   = "stage_name"
	KeyImageTag    = "image_tag"
	KeyContainerID = "container_id"
	// KeyDockerHost names the Docker engine that owns an instance ("" for
	// none yet), and on the exporter's own metrics the engine it watches.
	KeyDockerHost = "docker_host"
)

// InstanceKeys are the gauges' labels, in order. Never instance, job or
// stage: they clash with Prometheus target labels.
var InstanceKeys = []string{KeyInstanceID, KeyProjectName, KeyStageName, KeyImageTag, KeyContainerID, KeyDockerHost}

// Instance statuses this service reads or writes; the platform has more.
const (
	StatusRunning  = "running"
	StatusStopped  = "stopped"
	StatusRemoving = "removing"
)

// Instance is one row of instances, with the names of its project and stage.
type Instance struct {
	ID          string
	ProjectID   string
	ProjectName string
	StageName   string
	ContainerID string
	ImageTag    string
	Status      string
	// LastAliveAt is zero when the platform never saw the instance running.
	LastAliveAt time.Time
	CreatedAt   time.Time
	// DockerHost is the engine that owns the instance: the exporter that
	// listed its container; "" while none has.
	DockerHost string
	// Keep is a person's keep of the instance, nil without one.
	Keep *Keep
}

// ShortID is the 12-character form of a container id, as docker ps shows it.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
