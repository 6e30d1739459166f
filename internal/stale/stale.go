// Package stale is the domain of stale-exporter, pure code with no I/O: an
// instance and what Docker says of its container, the stale rule that judges
// them (written once, here), the threshold's bounds, the platform's label
// names, and the snapshot one scan produces.
package stale

import (
	"fmt"
	"time"
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

// Docker states reported for containers Docker could not describe.
const (
	// StateMissing: the engine answered 404 for the container.
	StateMissing = "missing"
	// StateUnknown: the container was not looked up (yet); never stale.
	StateUnknown = "unknown"
)

// Container is what Docker says about an instance's container.
type Container struct {
	Found bool
	// Unknown is set when Docker was not asked about the container this
	// scan (lookups are bounded) or could not say; such an instance is
	// never judged stale.
	Unknown bool
	State   string
	Labels  map[string]string
	// Created is when the container was created.
	Created time.Time
	// FinishedAt is when the container last stopped; zero if it never ran.
	FinishedAt time.Time
}

// DockerState is the container's Docker state, StateMissing or StateUnknown.
func (c Container) DockerState() string {
	switch {
	case c.Unknown:
		return StateUnknown
	case !c.Found:
		return StateMissing
	}
	return c.State
}

// Running reports whether the container counts as alive: anything but
// exited, created, dead or missing (paused and restarting containers are
// still someone's).
func (c Container) Running() bool {
	if !c.Found || c.Unknown {
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
	ReasonUnknown  Reason = "container state unknown"
)

// Verdict is the stale rule applied to one instance.
type Verdict struct {
	LastAlive time.Time
	Stale     bool
	Reason    Reason
}

// LastAlive is the latest sign of life of an instance: the store's
// last_alive_at, the row's creation, and Docker's Created and FinishedAt of
// its container. FinishedAt lets a restarted exporter know when a container
// really stopped; Created and the row's creation keep a redeploy in progress
// (a new container not started yet) from looking as old as the instance.
func LastAlive(in Instance, c Container) time.Time {
	last := in.LastAliveAt
	for _, t := range []time.Time{in.CreatedAt, c.Created, c.FinishedAt} {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// Judge is the stale rule, the only place it is written: an instance is
// stale when its container is known not to be running (exited, created, dead
// or missing), its latest sign of life (see LastAlive) is older than the
// threshold, its status is not removing, and it is not kept. A container
// younger than the threshold is therefore never stale, and neither is one
// whose state is unknown.
func Judge(in Instance, c Container, threshold time.Duration, now time.Time) Verdict {
	v := Verdict{LastAlive: LastAlive(in, c)}
	switch {
	case c.Running():
		v.LastAlive = now
		v.Reason = ReasonRunning
	case c.Unknown:
		v.Reason = ReasonUnknown
	case in.Status == StatusRemoving:
		v.Reason = ReasonRemoving
	case c.Kept():
		v.Reason = ReasonKept
	case threshold <= 0 || now.Sub(v.LastAlive) <= threshold:
		v.Reason = ReasonRecent
	default:
		v.Stale, v.Reason = true, ReasonStale
	}
	return v
}

// MaxThresholdDays bounds the threshold: 100 years, far below the ~292 years
// a time.Duration holds, so that no setting can wrap around to negative.
const MaxThresholdDays = 36500

// MaxThreshold is MaxThresholdDays as a duration.
const MaxThreshold = MaxThresholdDays * 24 * time.Hour

// Threshold is the stale threshold in force: the override when set, else
// the store's settings.stale_threshold_days. A value out of range (not
// positive, or over 100 years) is an error, never a wrap: callers fail safe.
func Threshold(override time.Duration, days int64) (time.Duration, error) {
	switch {
	case override < 0 || override > MaxThreshold:
		return 0, fmt.Errorf("stale threshold override %s is out of range (more than 0, at most %d days)", override, MaxThresholdDays)
	case override > 0:
		return override, nil
	case days < 1 || days > MaxThresholdDays:
		return 0, fmt.Errorf("settings.stale_threshold_days = %d is out of range (1 to %d)", days, MaxThresholdDays)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}
