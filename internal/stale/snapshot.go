package stale

import "time"

// Observation is one instance as a scan saw it.
type Observation struct {
	Instance  Instance
	Container Container
	Verdict   Verdict
}

// Snapshot is the result of one successful scan.
type Snapshot struct {
	Observations []Observation
	Threshold    time.Duration
	ScannedAt    time.Time
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
