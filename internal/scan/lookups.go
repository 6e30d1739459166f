package scan

import (
	"context"
	"sync"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// inspectConcurrency bounds parallel inspects on a cold cache.
const inspectConcurrency = 8

// maxUnlistedLookups bounds the inspects one scan spends on rows whose
// container is not in the labelled list; the rest stay unknown (never
// stale) until a later scan looks them up.
const maxUnlistedLookups = 100

// lookUpUnlisted asks Docker about the containers rows name (by id or name)
// that the labelled list lacks: such a container may run without the
// platform's label. Only the engine's 404 makes one missing; a container not
// looked up, or that Docker could not describe, is returned as unknown.
func (s *Scanner) lookUpUnlisted(ctx context.Context, instances []stale.Instance, listed listing) map[string]stale.Container {
	out := map[string]stale.Container{}
	var refs []string
	for _, in := range instances {
		ref := in.ContainerID
		if ref == "" {
			continue
		}
		if _, ok := listed.lookup(ref); ok {
			continue
		}
		if _, seen := out[ref]; seen {
			continue
		}
		if s.gone[ref] {
			out[ref] = stale.Container{}
			continue
		}
		out[ref] = stale.Container{Unknown: true}
		refs = append(refs, ref)
	}
	if len(refs) > maxUnlistedLookups {
		s.logger.Info("more unlisted containers than one scan looks up; the rest stay unknown for now",
			"unlisted", len(refs), "looked_up", maxUnlistedLookups)
		refs = refs[:maxUnlistedLookups]
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, inspectConcurrency)
	)
	for _, ref := range refs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := s.docker.Inspect(ctx, ref)
			if err != nil {
				s.logger.Debug("look up unlisted container", "container", ref, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			out[ref] = c
		}()
	}
	wg.Wait()

	gone := map[string]bool{}
	for ref, c := range out {
		if !c.Found && !c.Unknown && stale.IsFullContainerID(ref) {
			gone[ref] = true
		}
	}
	s.gone = gone
	return out
}

// runTimes are Docker's StartedAt and FinishedAt of a stopped container, and
// the volumes mounted into it: what only an inspect says.
type runTimes struct {
	started, finished time.Time
	volumes           []stale.Volume
}

// runTimes returns StartedAt and FinishedAt for every stopped container,
// inspecting only those not cached yet, and forgets containers that are gone
// or running.
func (s *Scanner) runTimes(ctx context.Context, containers []stale.Container) (map[string]runTimes, error) {
	s.mu.Lock()
	known := s.stopped
	s.mu.Unlock()

	times := make(map[string]runTimes, len(containers))
	var missing []string
	for _, c := range containers {
		if c.Running() {
			continue
		}
		switch t, ok := known[c.ID]; {
		case !c.StartedAt.IsZero() || !c.FinishedAt.IsZero():
			// Inspected already (a view's event): the engine's own times,
			// newer than any cached.
			times[c.ID] = runTimes{started: c.StartedAt, finished: c.FinishedAt, volumes: c.Volumes}
		case ok:
			times[c.ID] = t
		default:
			missing = append(missing, c.ID)
		}
	}

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, inspectConcurrency)
	)
	for _, id := range missing {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			// A container removed between list and inspect has no run
			// times to offer.
			c, err := s.docker.Inspect(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			times[id] = runTimes{started: c.StartedAt, finished: c.FinishedAt, volumes: c.Volumes}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	s.mu.Lock()
	s.stopped = times
	s.mu.Unlock()
	return times, nil
}

// maxMeasures bounds the containers one scan measures; the rest are
// measured by the scans after it.
const maxMeasures = 50

// measure fills in the disk the stale containers hold, measuring only
// those not measured yet: the writable layer of each, and the anonymous
// volumes of all with one ask of the engine's volume sizes. A measurement
// that fails leaves the container unmeasured, never the scan failed. What
// was measured stays known while the container exists (a cleanup counts it
// as reclaimed once it removed the container, marked removing by then).
func (s *Scanner) measure(ctx context.Context, snap *stale.Snapshot) {
	s.mu.Lock()
	known := s.reclaimable
	s.mu.Unlock()
	next := map[string]int64{}
	var sizes map[string]int64
	measured := 0
	for i := range snap.Observations {
		o := &snap.Observations[i]
		c := o.Container
		if !c.Found {
			continue
		}
		bytes, ok := known[c.ID]
		if ok {
			next[c.ID] = bytes
		}
		if !o.Verdict.Stale {
			continue
		}
		if !ok && measured < maxMeasures {
			measured++
			var err error
			if bytes, sizes, err = s.measureOne(ctx, c, sizes); err != nil {
				s.logger.Debug("measure a stale container", "container_id", c.ID, "err", err)
				continue
			}
			next[c.ID], ok = bytes, true
		}
		o.Reclaimable, o.Measured = bytes, ok
	}
	s.mu.Lock()
	s.reclaimable = next
	s.mu.Unlock()
}

// measureOne measures a container: its writable layer, and its anonymous
// volumes from the engine's volume sizes (asked once, then given back).
func (s *Scanner) measureOne(ctx context.Context, c stale.Container, sizes map[string]int64) (int64, map[string]int64, error) {
	bytes, err := s.docker.Size(ctx, c.ID)
	if err != nil {
		return 0, sizes, err
	}
	for _, v := range c.Volumes {
		if !v.Anonymous {
			continue
		}
		if sizes == nil {
			if sizes, err = s.docker.VolumeSizes(ctx); err != nil {
				return 0, nil, err
			}
		}
		bytes += sizes[v.Name]
	}
	return bytes, sizes, nil
}

// Reclaimable is the disk the scans measured a container to hold, if they
// did.
func (s *Scanner) Reclaimable(containerID string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bytes, ok := s.reclaimable[containerID]
	return bytes, ok
}
