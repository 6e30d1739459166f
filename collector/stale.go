package collector

import (
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/docker-watcher/stale-exporter/store"
)

// Labels the platform puts on the containers it starts.
const (
	// LabelInstanceID marks a container as managed and names its instance.
	LabelInstanceID = "docker-watcher.instance-id"
	LabelProject    = "docker-watcher.project"
	LabelStage      = "docker-watcher.stage"
	LabelImageTag   = "docker-watcher.image-tag"
	// LabelKeep set to "true" exempts a container from the stale rule.
	LabelKeep = "docker-watcher.keep"
)

// StateMissing is the Docker state reported for a container Docker does not know.
const StateMissing = "missing"

// Container is what Docker says about an instance's container.
type Container struct {
	Found  bool
	State  string
	Labels map[string]string
	// FinishedAt is when the container last stopped; zero if it never ran.
	FinishedAt time.Time
}

// DockerState is the container's Docker state, or StateMissing.
func (c Container) DockerState() string {
	if !c.Found {
		return StateMissing
	}
	return c.State
}

// Running reports whether the container counts as alive: anything but
// exited, created, dead or missing (paused and restarting containers are
// still someone's).
func (c Container) Running() bool {
	if !c.Found {
		return false
	}
	switch c.State {
	case "exited", "created", "dead":
		return false
	}
	return true
}

// Kept reports whether the container carries the keep label.
func (c Container) Kept() bool { return c.Labels[LabelKeep] == "true" }

// Reason says why an instance is or is not stale.
type Reason string

// The outcomes of the stale rule.
const (
	ReasonStale    Reason = "stale"
	ReasonRunning  Reason = "container is running"
	ReasonRemoving Reason = "instance is being removed"
	ReasonKept     Reason = "container carries " + LabelKeep + "=true"
	ReasonRecent   Reason = "last alive within the stale threshold"
)

// Verdict is the stale rule applied to one instance.
type Verdict struct {
	LastAlive time.Time
	Stale     bool
	Reason    Reason
}

// LastAlive is the last time the instance is known to have been running:
// the later of the store's last_alive_at and Docker's FinishedAt, so that a
// restarted exporter still knows when a container really stopped. An
// instance never seen running counts from its row's creation.
func LastAlive(in store.Instance, c Container) time.Time {
	last := in.LastAliveAt
	if c.FinishedAt.After(last) {
		last = c.FinishedAt
	}
	if last.IsZero() {
		return in.CreatedAt
	}
	return last
}

// Judge is the stale rule, the only place it is written: an instance is
// stale when its container is not running, it was last alive longer ago than
// the threshold, its status is not removing, and it is not kept.
func Judge(in store.Instance, c Container, threshold time.Duration, now time.Time) Verdict {
	v := Verdict{LastAlive: LastAlive(in, c)}
	switch {
	case c.Running():
		v.LastAlive = now
		v.Reason = ReasonRunning
	case in.Status == store.StatusRemoving:
		v.Reason = ReasonRemoving
	case c.Kept():
		v.Reason = ReasonKept
	case now.Sub(v.LastAlive) <= threshold:
		v.Reason = ReasonRecent
	default:
		v.Stale, v.Reason = true, ReasonStale
	}
	return v
}

// Threshold is the stale threshold in force: the override when set, else
// the store's settings.stale_threshold_days.
func Threshold(override time.Duration, days int) time.Duration {
	if override > 0 {
		return override
	}
	return time.Duration(days) * 24 * time.Hour
}

func containerFromInspect(res container.InspectResponse) (Container, error) {
	c := Container{Found: true}
	if res.Config != nil {
		c.Labels = res.Config.Labels
	}
	if res.State != nil {
		c.State = string(res.State.Status)
	}
	finished, err := FinishedAt(res.State)
	c.FinishedAt = finished
	return c, err
}
