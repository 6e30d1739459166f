// Package stale is the domain of stale-exporter, pure code with no I/O: an
// instance and what Docker says of its container, the stale rule that judges
// them (written once, here), the threshold's bounds, the platform's label
// names, and the snapshot one scan produces.
package stale

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Labels the platform puts on the containers it starts.
const (
	// LabelInstanceID marks a container as managed and names its instance.
	LabelInstanceID = "docker-watcher.instance-id"
	LabelProject    = "docker-watcher.project"
	LabelStage      = "docker-watcher.stage"
	LabelImageTag   = "docker-watcher.image-tag"
	// LabelKeep set to a true boolean (true, 1, t, any case) exempts a
	// container from the stale rule; a value that is not a boolean protects
	// it too.
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
	// ID is the container's full id as the engine gave it: the only
	// reference a removal may use (a name or a prefix can come to name
	// another container).
	ID    string
	Found bool
	// Image is the image reference the container was created from.
	Image string
	// Unknown is set when Docker was not asked about the container this
	// scan (lookups are bounded) or could not say; such an instance is
	// never judged stale.
	Unknown bool
	State   string
	Labels  map[string]string
	// Created is when the container was created.
	Created time.Time
	// StartedAt is when the container last started; zero if it never ran.
	StartedAt time.Time
	// FinishedAt is when the container last stopped; zero if it never ran.
	FinishedAt time.Time
	// SharedLabel is set when another container carries the instance's
	// label too: which of them is the instance is ambiguous, so it is never
	// judged stale.
	SharedLabel bool
	// Volumes are the volumes mounted into the container (an inspect says
	// them, a list does not).
	Volumes []Volume
}

// Volume is a volume mounted into a container.
type Volume struct {
	Name string
	// Anonymous: made for the container, not named by anyone; removed with
	// it (docker rm -v), while a named volume never is.
	Anonymous bool
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

// Keep reads the keep label: kept when it is a true boolean (Go's
// strconv.ParseBool set, any case), and also, fail-safe, when it is there
// but not a boolean (unparsable is then set).
func (c Container) Keep() (kept, unparsable bool) {
	raw, ok := c.Labels[LabelKeep]
	if !ok {
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(strings.TrimSpace(raw)))
	if err != nil {
		return true, true
	}
	return b, false
}

// Reason says why an instance is or is not stale.
type Reason string

// Unparsable reports whether the reason is a docker-watcher label that does
// not parse: the instance is protected, and someone should fix the label.
func (r Reason) Unparsable() bool {
	return r == ReasonKeepUnparsable || r == ReasonPolicyUnparsable
}

// The outcomes of the stale rule.
const (
	ReasonStale    Reason = "stale"
	ReasonRunning  Reason = "container is running"
	ReasonRemoving Reason = "instance is being removed"
	ReasonKept     Reason = "container carries " + LabelKeep + "=true"
	// ReasonKeepUnparsable: a keep label that is not a boolean protects.
	ReasonKeepUnparsable Reason = "container's " + LabelKeep + " label is not a boolean (true or false): kept"
	ReasonRecent         Reason = "last alive within the stale threshold"
	ReasonUnknown        Reason = "container state unknown"
	// ReasonNoContainer: the row names no container, so there is nothing
	// to remove and nothing to judge.
	ReasonNoContainer Reason = "instance has no container"
	// ReasonNotManaged: the container the row names does not carry the
	// instance's label, so nothing proves it is the instance's.
	ReasonNotManaged Reason = "container does not carry this instance's " + LabelInstanceID + " label"
	// ReasonPolicyUnparsable: a policy label does not parse (Detail says
	// which); never a wider net.
	ReasonPolicyUnparsable Reason = "a docker-watcher label does not parse, so it is never stale"
	// ReasonNever: the container's stale-after=never.
	ReasonNever Reason = "container carries " + LabelStaleAfter + "=never"
	// ReasonKeptUntil: kept by its keep-until label or by a person (Verdict
	// says until when and by whom).
	ReasonKeptUntil Reason = "kept"
	// ReasonSharedLabel: two containers carry the instance's label.
	ReasonSharedLabel Reason = "another container carries this instance's " + LabelInstanceID + " label"
)

// Verdict is the stale rule applied to one instance.
type Verdict struct {
	LastAlive time.Time
	Stale     bool
	Reason    Reason
	// Detail completes Reason where it needs a value (the label that does
	// not parse).
	Detail string
	// Threshold is the instance's own: its stale-after label, else the
	// global one.
	Threshold time.Duration
	// StaleSince is when a stale instance became stale: its last alive plus
	// its threshold, or the end of a keep if that came later (the grace of
	// an automatic removal counts from it). Zero when not stale.
	StaleSince time.Time
	// Keep is the keep that holds (a person's, or the keep-until label's,
	// with By empty), nil when none does.
	Keep *Keep
}

// ChangesAt is when the verdict changes by the passing of time alone: a
// recent instance becomes stale just after its threshold, a timed keep
// ends. Zero when time alone changes nothing (a running instance's last
// alive moves with the clock, but its verdict does not).
func (v Verdict) ChangesAt() time.Time {
	switch {
	case v.Reason == ReasonRecent && v.Threshold > 0:
		return v.LastAlive.Add(v.Threshold + time.Nanosecond)
	case v.Reason == ReasonKeptUntil && v.Keep != nil && !v.Keep.Until.IsZero():
		return v.Keep.Until
	}
	return time.Time{}
}

// Explain is the verdict's reason with its detail, for people.
func (v Verdict) Explain() string {
	if v.Detail != "" {
		return string(v.Reason) + ": " + v.Detail
	}
	return string(v.Reason)
}

// LastAlive is the latest sign of life of an instance: the store's
// last_alive_at, the row's creation, and Docker's Created, StartedAt and
// FinishedAt of its container. FinishedAt lets a restarted exporter know when
// a container really stopped; Created and the row's creation keep a redeploy
// in progress (a new container not started yet) from looking as old as the
// instance.
func LastAlive(in Instance, c Container) time.Time {
	last := in.LastAliveAt
	for _, t := range []time.Time{in.CreatedAt, c.Created, c.StartedAt, c.FinishedAt} {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// NewerSignOfLife reports whether last is a sign of life after judged, at
// the store's precision (microseconds): a removal pinned to the state it
// judged must not go ahead once the container or its row shows life since.
func NewerSignOfLife(last, judged time.Time) bool {
	return last.Truncate(time.Microsecond).After(judged.Truncate(time.Microsecond))
}

// Judge is the stale rule, the only place it is written: an instance is
// stale when it names a container, that container is known not to be
// running (exited, created, dead or missing), carries the instance's label
// and is the only one that does, its latest sign of life (see LastAlive) is older than
// the threshold, its status is not removing, and it is not kept. A container
// younger than the threshold is therefore never stale, and neither is one
// whose state is unknown.
func Judge(in Instance, c Container, threshold time.Duration, now time.Time) Verdict {
	v := Verdict{LastAlive: LastAlive(in, c), Threshold: threshold}
	kept, unparsable := c.Keep()
	policy := ContainerPolicy(c.Labels)
	if policy.Threshold > 0 {
		v.Threshold = policy.Threshold
	}
	keepEnd, keep := keepOf(in, policy, now)
	switch {
	case c.Running():
		v.LastAlive = now
		v.Reason = ReasonRunning
	case in.ContainerID == "":
		v.Reason = ReasonNoContainer
	case c.Unknown:
		v.Reason = ReasonUnknown
	case c.Found && c.Labels[LabelInstanceID] != in.ID:
		v.Reason = ReasonNotManaged
	case c.SharedLabel:
		v.Reason = ReasonSharedLabel
	case in.Status == StatusRemoving:
		v.Reason = ReasonRemoving
	case unparsable:
		v.Reason = ReasonKeepUnparsable
	case kept:
		v.Reason = ReasonKept
	case policy.Problem != "":
		v.Reason, v.Detail = ReasonPolicyUnparsable, policy.Problem
	case policy.Never:
		v.Reason = ReasonNever
	case keep != nil:
		v.Reason, v.Keep = ReasonKeptUntil, keep
	case v.Threshold <= 0 || now.Sub(v.LastAlive) <= v.Threshold:
		v.Reason = ReasonRecent
	default:
		v.Stale, v.Reason = true, ReasonStale
		v.StaleSince = v.LastAlive.Add(v.Threshold)
		if keepEnd.After(v.StaleSince) {
			v.StaleSince = keepEnd
		}
	}
	return v
}

// keepOf is the keep that holds at now (a person's first, then the
// keep-until label's), and the latest end of the keeps that ended.
func keepOf(in Instance, p Policy, now time.Time) (ended time.Time, holds *Keep) {
	if k := in.Keep; k != nil {
		if k.ActiveAt(now) {
			return time.Time{}, k
		}
		ended = k.Until
	}
	if !p.KeepUntil.IsZero() {
		if now.Before(p.KeepUntil) {
			return time.Time{}, &Keep{Until: p.KeepUntil, Reason: LabelKeepUntil + " label"}
		}
		if p.KeepUntil.After(ended) {
			ended = p.KeepUntil
		}
	}
	return ended, nil
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
