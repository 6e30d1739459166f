package stale

import (
	"fmt"
	"time"
)

// UnownedMode says whether an exporter judges the instances no engine owns
// yet (instances.docker_host NULL): a 404 proves a container gone only on the
// engine that owned it, so judging unowned rows is safe only while this is
// the one engine the store knows.
type UnownedMode string

// The values of --docker.claim-unowned.
const (
	// UnownedAuto judges unowned instances while no other engine has ever
	// registered with the store, and never again once one has (until an
	// operator removes that registration).
	UnownedAuto UnownedMode = "auto"
	UnownedOn   UnownedMode = "true"
	UnownedOff  UnownedMode = "false"
)

// UnownedModes are the values of UnownedMode, for flags.
var UnownedModes = []string{string(UnownedAuto), string(UnownedOn), string(UnownedOff)}

// ParseUnownedMode reads a --docker.claim-unowned value.
func ParseUnownedMode(s string) (UnownedMode, error) {
	switch m := UnownedMode(s); m {
	case UnownedAuto, UnownedOn, UnownedOff:
		return m, nil
	}
	return "", fmt.Errorf("claim-unowned must be auto, true or false, got %q", s)
}

// JudgesUnowned reports whether the mode judges unowned instances, given
// how many other engines have registered with the store.
func (m UnownedMode) JudgesUnowned(otherEngines int) bool {
	switch m {
	case UnownedOn:
		return true
	case UnownedAuto:
		return otherEngines == 0
	}
	return false
}

// Scope is what one exporter judges and cleans: the instances its engine
// owns, and, when Unowned, those no engine owns yet. It is the ownership rule,
// written once: the scan, the cleanup re-check and the store's queries use it.
type Scope struct {
	// Host is the name of the exporter's engine.
	Host string
	// Unowned is set while the exporter judges unowned instances.
	Unowned bool
}

// Judges reports whether the scope covers an instance.
func (s Scope) Judges(in Instance) bool {
	return in.DockerHost == s.Host || (in.DockerHost == "" && s.Unowned)
}

// Config is how an exporter judges, the same for its scans and for its
// cleanups' re-checks: the threshold override, its engine, whether it judges
// unowned instances, and its clock.
type Config struct {
	// Threshold overrides settings.stale_threshold_days when positive.
	Threshold time.Duration
	// Host is the name of the engine the exporter watches: it judges the
	// instances that engine owns.
	Host string
	// Unowned says whether it also judges the instances no engine owns
	// (auto when empty).
	Unowned UnownedMode
	// Now is the clock of the stale rule; nil means time.Now. Tests move it
	// instead of sleeping.
	Now func() time.Time
}

// WithDefaults fills what was left out: auto for Unowned, time.Now for Now.
func (c Config) WithDefaults() Config {
	if c.Unowned == "" {
		c.Unowned = UnownedAuto
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Scope is the scope of the exporter, given how many other engines have
// registered with the store.
func (c Config) Scope(otherEngines int) Scope {
	return Scope{Host: c.Host, Unowned: c.Unowned.JudgesUnowned(otherEngines)}
}
