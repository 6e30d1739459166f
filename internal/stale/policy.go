package stale

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The platform's labels of a container's own policy, set at deploy (a
// container's labels cannot change after its creation).
const (
	// LabelStaleAfter overrides the threshold for the container: a
	// duration (90m, 36h, 7d) in the global threshold's bounds, or never.
	LabelStaleAfter = "docker-watcher.stale-after"
	// LabelKeepUntil keeps the container from being stale until an RFC
	// 3339 time.
	LabelKeepUntil = "docker-watcher.keep-until"
)

// Policy is what a container's labels say of its staleness.
type Policy struct {
	// Threshold overrides the global threshold when positive.
	Threshold time.Duration
	// Never: stale-after=never.
	Never bool
	// KeepUntil is the end of a keep-until label, zero without one.
	KeepUntil time.Time
	// Problem names a label that does not parse: the container is then
	// never stale (never a wider net), and this says why.
	Problem string
}

// ContainerPolicy reads a container's policy labels.
func ContainerPolicy(labels map[string]string) Policy {
	var p Policy
	if raw, ok := labels[LabelStaleAfter]; ok {
		switch d, err := ParseStaleAfter(raw); {
		case err != nil:
			p.Problem = fmt.Sprintf("%s=%q: %v", LabelStaleAfter, raw, err)
		case d == 0:
			p.Never = true
		default:
			p.Threshold = d
		}
	}
	if raw, ok := labels[LabelKeepUntil]; ok {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(raw))
		if err != nil && p.Problem == "" {
			p.Problem = fmt.Sprintf("%s=%q: not an RFC 3339 time (2026-12-24T00:00:00Z)", LabelKeepUntil, raw)
		}
		p.KeepUntil = t
	}
	return p
}

// ParseStaleAfter reads a stale-after value: never (0), a Go duration or a
// whole number of days (7d), more than zero and at most 100 years.
func ParseStaleAfter(raw string) (time.Duration, error) {
	v := strings.ToLower(strings.TrimSpace(raw))
	if v == "never" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 1 || n > MaxThresholdDays {
			return 0, fmt.Errorf("not a duration (90m, 36h, 7d) or never, or out of range (1 to %d days)", MaxThresholdDays)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("not a duration (90m, 36h, 7d) or never")
		}
	}
	if d <= 0 || d > MaxThreshold {
		return 0, fmt.Errorf("out of range (more than 0, at most %d days)", MaxThresholdDays)
	}
	return d, nil
}

// Keep is a person's keep of an instance (stored by the service, since a
// container's labels cannot change): it is not stale until Until, or ever
// when Until is zero.
type Keep struct {
	Until  time.Time
	By     string
	Reason string
}

// Forever reports a keep with no end.
func (k Keep) Forever() bool { return k.Until.IsZero() }

// ActiveAt reports whether the keep holds at a time.
func (k Keep) ActiveAt(now time.Time) bool { return k.Forever() || now.Before(k.Until) }
