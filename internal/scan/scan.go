package scan

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// scan is one scan: one labelled list and one read of the store (at once),
// lookups of what the list lacks, the stale rule on every instance, then one
// write of the instances seen running and one of the ownership observed.
func (s *Scanner) scan(ctx context.Context) (*stale.Snapshot, Result) {
	now := s.cfg.Now()
	containers, inv, r := s.read(ctx)
	if r.Err != nil {
		return nil, r
	}
	// An out-of-range or unusable threshold fails the scan: the last good
	// snapshot is kept and nothing becomes stale by a wrapped or absurd value.
	if inv.ThresholdErr != nil && s.cfg.Threshold == 0 {
		r.Err = inv.ThresholdErr
		return nil, r
	}
	threshold, err := stale.Threshold(s.cfg.Threshold, inv.ThresholdDays)
	if err != nil {
		r.Err = err
		return nil, r
	}
	if s.cfg.Adopt {
		if inv, err = s.adopt(ctx, inv, containers); err != nil {
			r.StoreUp, r.Err = false, err
			return nil, r
		}
	}
	times, err := s.runTimes(ctx, containers)
	if err != nil {
		r.DockerUp, r.Err = false, err
		return nil, r
	}
	listed := newListing(containers)
	scope := s.cfg.Scope(inv.OtherEngines)
	owned, judged := ownership(scope, inv.Instances, listed)
	unlisted := s.lookUpUnlisted(ctx, judged, listed)
	snap := &stale.Snapshot{Threshold: threshold, ScannedAt: now, Scope: scope, Engines: inv.Engines,
		Observations: make([]stale.Observation, 0, len(inv.Instances))}
	for _, in := range inv.Instances {
		if owned[in.ID] {
			in.DockerHost = scope.Host
		}
		c := stale.Container{Unknown: true} // another engine's to judge
		if scope.Judges(in) {
			c = container(in, listed, times, unlisted)
		}
		v := stale.Judge(in, c, threshold, now)
		if c.Running() {
			in.LastAliveAt = now
		}
		snap.Observations = append(snap.Observations, stale.Observation{Instance: in, Container: c, Verdict: v})
	}
	alive, written := s.aliveWrites(snap, now)
	if err := s.write(ctx, alive, slices.Collect(maps.Keys(owned))); err != nil {
		r.StoreUp, r.Err = false, err
		return nil, r
	}
	s.written = written
	s.measure(ctx, snap)
	r.Success = true
	return snap, r
}

// read lists the labelled containers and reads the inventory at once.
func (s *Scanner) read(ctx context.Context) ([]stale.Container, store.Inventory, Result) {
	var (
		wg         sync.WaitGroup
		containers []stale.Container
		inv        store.Inventory
		dockerErr  error
		storeErr   error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		containers, dockerErr = s.docker.List(ctx)
	}()
	go func() {
		defer wg.Done()
		inv, storeErr = s.store.ReadInventory(ctx, s.cfg.Host)
	}()
	wg.Wait()
	// A store that answers but lacks a usable threshold is up, and
	// misconfigured (inv.ThresholdErr).
	return containers, inv, Result{DockerUp: dockerErr == nil, StoreUp: storeErr == nil, Err: errors.Join(dockerErr, storeErr)}
}

// write records the last alive times due and the ownership observed.
func (s *Scanner) write(ctx context.Context, alive map[string]time.Time, owned []string) error {
	if err := s.store.MarkAlive(ctx, alive); err != nil {
		return err
	}
	return s.store.Own(ctx, s.cfg.Host, owned)
}

// aliveWrites picks the last alive times a scan writes, batched: an
// instance whose container runs, when first seen running and then once
// every AliveWriteInterval (not on every scan: at 100 hosts, writing every
// running row on every scan is most of the database's work); one seen
// running before whose container stopped since, at once, its end as the
// engine says it. It answers the writes and what will have been written
// of the instances running.
func (s *Scanner) aliveWrites(snap *stale.Snapshot, now time.Time) (writes, written map[string]time.Time) {
	writes, written = map[string]time.Time{}, map[string]time.Time{}
	for _, o := range snap.Observations {
		id, c := o.Instance.ID, o.Container
		last, seen := s.written[id]
		switch {
		case c.Running() && (!seen || now.Sub(last) >= s.cfg.AliveWriteInterval):
			writes[id], written[id] = now, now
		case c.Running():
			written[id] = last
		case seen:
			end := c.FinishedAt
			if e, ok := s.docker.(endings); ok && !c.Found {
				end, _ = e.EndedAt(o.Instance.ContainerID)
			}
			if end.After(last) {
				writes[id] = end
			}
		}
	}
	return writes, written
}

// endings is a Docker that remembers when the containers it saw destroyed
// had stopped (a view kept by events).
type endings interface {
	EndedAt(id string) (time.Time, bool)
}

// container is what the scan knows of the container an instance row names.
func container(in stale.Instance, listed listing, times map[string]runTimes, unlisted map[string]stale.Container) stale.Container {
	if in.ContainerID == "" {
		return stale.Container{}
	}
	c, ok := listed.lookup(in.ContainerID)
	if !ok {
		c = unlisted[in.ContainerID]
	}
	if !c.Found {
		// A row naming a container that is gone while another carries the
		// instance's label is ambiguous too.
		c.SharedLabel = listed.labelled[in.ID] > 0
		return c
	}
	t := times[c.ID]
	c.StartedAt, c.FinishedAt = t.started, t.finished
	if c.Volumes == nil {
		c.Volumes = t.volumes
	}
	// Counted among the listed containers carrying the label, if it does
	// (one that does not is the rule's "not managed" already).
	c.SharedLabel = listed.labelled[in.ID] > 1
	return c
}

// ownership finds the unowned instances this engine comes to own (their
// container is in its labelled list and carries their instance id: a
// container id string alone never proves ownership), and the instances it
// judges.
func ownership(scope stale.Scope, instances []stale.Instance, listed listing) (owned map[string]bool, judged []stale.Instance) {
	owned = map[string]bool{}
	for _, in := range instances {
		if in.DockerHost == "" {
			if c, ok := listed.lookup(in.ContainerID); ok && c.Labels[stale.LabelInstanceID] == in.ID {
				owned[in.ID] = true
				in.DockerHost = scope.Host
			}
		}
		if scope.Judges(in) {
			judged = append(judged, in)
		}
	}
	return owned, judged
}

// listing is one labelled list, indexed for the scan.
type listing struct {
	byID map[string]stale.Container
	// labelled counts the listed containers carrying each instance id.
	labelled map[string]int
}

func newListing(containers []stale.Container) listing {
	l := listing{byID: make(map[string]stale.Container, 2*len(containers)), labelled: map[string]int{}}
	for _, c := range containers {
		l.byID[c.ID] = c
		l.byID[stale.ShortID(c.ID)] = c
		l.labelled[c.Labels[stale.LabelInstanceID]]++
	}
	return l
}

// lookup finds the container an instance row names, by its full id or by an
// abbreviated one of at least 12 characters (as docker ps shows them).
func (l listing) lookup(id string) (stale.Container, bool) {
	if len(id) < 12 {
		return stale.Container{}, false
	}
	c, ok := l.byID[id]
	if !ok {
		c, ok = l.byID[stale.ShortID(id)]
	}
	if !ok || !strings.HasPrefix(c.ID, id) {
		return stale.Container{}, false
	}
	return c, true
}
