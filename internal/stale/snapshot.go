package stale

import "time"

// Observation is one instance as a scan saw it.
type Observation struct {
	Instance  Instance
	Container Container
	Verdict   Verdict
	// Reclaimable is the disk a stale container holds (its writable layer
	// and its anonymous volumes), when Measured.
	Reclaimable int64
	Measured    bool
}

// Snapshot is the result of one successful scan.
type Snapshot struct {
	Observations []Observation
	Threshold    time.Duration
	ScannedAt    time.Time
	// Scope is what the scan judged: its engine's instances, and the
	// unowned ones when Scope.Unowned.
	Scope Scope
	// Engines are the engines registered with the store, by name, with
	// their exporters' latest heartbeat.
	Engines map[string]time.Time
}

// StaleCount is the number of stale instances.
func (s *Snapshot) StaleCount() int {
	n := 0
	for _, o := range s.Observations {
		if o.Verdict.Stale {
			n++
		}
	}
	return n
}

// UnownedCount is the number of instances no engine owns.
func (s *Snapshot) UnownedCount() int {
	n := 0
	for _, o := range s.Observations {
		if o.Instance.DockerHost == "" {
			n++
		}
	}
	return n
}

// UnparsableCount is the number of instances whose docker-watcher labels
// do not parse (never stale until fixed).
func (s *Snapshot) UnparsableCount() int {
	n := 0
	for _, o := range s.Observations {
		if o.Verdict.Reason.Unparsable() {
			n++
		}
	}
	return n
}

// ReclaimableBytes is the disk the measured stale containers hold.
func (s *Snapshot) ReclaimableBytes() int64 {
	var n int64
	for _, o := range s.Observations {
		if o.Verdict.Stale && o.Measured {
			n += o.Reclaimable
		}
	}
	return n
}

// ChangesAt is the first time after the scan at which time alone changes
// one of its verdicts (zero: none does).
func (s *Snapshot) ChangesAt() time.Time {
	var first time.Time
	for _, o := range s.Observations {
		if at := o.Verdict.ChangesAt(); at.After(s.ScannedAt) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}
