package storetest

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Mem is the store in memory, with the real store's semantics for one
// process: the unit layer of the scan and of the job path, without
// PostgreSQL. Its fields are the state; a test changes them only while
// nothing else runs. The tests on a real database (New) remain the proof.
type Mem struct {
	mu sync.Mutex
	// Days is settings.stale_threshold_days; ThresholdErr, when set, is
	// what the settings hold instead of one usable value.
	Days         int64
	ThresholdErr error
	// Err, when set, fails every call, as an unreachable store does.
	Err       error
	Instances map[string]stale.Instance
	JobRows   []store.Job
	Events    []store.Event
	// Alive records MarkAlive; Adoptions the adopted containers; Engines
	// the registered engines and their heartbeats.
	Alive map[string]time.Time
	// AliveWrites counts the rows MarkAlive was asked to write.
	AliveWrites int
	Adoptions   []store.Adoption
	Engines     map[string]time.Time
	// Now is the database's clock (time.Now unless a test moves it).
	Now         func() time.Time
	occurrences map[string]bool
}

// NewMem returns an empty store with a threshold of 7 days.
func NewMem() *Mem {
	return &Mem{Days: 7, Instances: map[string]stale.Instance{}, Alive: map[string]time.Time{},
		Engines: map[string]time.Time{}, Now: time.Now, occurrences: map[string]bool{}}
}

// Put adds or replaces an instance.
func (m *Mem) Put(in stale.Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Instances[in.ID] = in
}

// ReadInventory reads the threshold, the instances of dockerHost and the
// unowned ones, by id, and registers dockerHost.
func (m *Mem) ReadInventory(_ context.Context, dockerHost string) (store.Inventory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return store.Inventory{}, m.Err
	}
	m.Engines[dockerHost] = m.Now()
	inv := store.Inventory{ThresholdDays: m.Days, ThresholdErr: m.ThresholdErr, Engines: map[string]time.Time{}}
	for name, seen := range m.Engines {
		inv.Engines[name] = seen
		if name != dockerHost {
			inv.OtherEngines++
		}
	}
	for _, in := range m.Instances {
		if in.DockerHost == dockerHost || in.DockerHost == "" {
			inv.Instances = append(inv.Instances, in)
		}
	}
	sort.Slice(inv.Instances, func(i, j int) bool { return inv.Instances[i].ID < inv.Instances[j].ID })
	return inv, nil
}

// Own makes dockerHost the owner of the given unowned instances.
func (m *Mem) Own(_ context.Context, dockerHost string, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, in := range m.Instances {
		if in.DockerHost == "" && slices.Contains(ids, id) {
			in.DockerHost = dockerHost
			m.Instances[id] = in
		}
	}
	return m.Err
}

// MarkAlive records when the instances were last seen alive, and counts
// the writes.
func (m *Mem) MarkAlive(_ context.Context, at map[string]time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.Copy(m.Alive, at)
	m.AliveWrites += len(at)
	return m.Err
}

// Adopt creates the instance of a labelled container.
func (m *Mem) Adopt(_ context.Context, a store.Adoption) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Adoptions = append(m.Adoptions, a)
	m.Instances[a.InstanceID] = stale.Instance{ID: a.InstanceID, ProjectName: a.ProjectName, StageName: a.StageName,
		ContainerID: a.ContainerID, ImageTag: a.ImageTag, Status: a.Status, CreatedAt: a.CreatedAt}
	return nil
}

// Instance reads one instance.
func (m *Mem) Instance(_ context.Context, id string) (stale.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return stale.Instance{}, m.Err
	}
	in, ok := m.Instances[id]
	if !ok {
		return stale.Instance{}, store.ErrNotFound
	}
	return in, nil
}

// ThresholdDays reads the threshold.
func (m *Mem) ThresholdDays(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ThresholdErr != nil {
		return 0, m.ThresholdErr
	}
	return m.Days, m.Err
}

// OtherEngines counts the registered engines besides name.
func (m *Mem) OtherEngines(_ context.Context, name string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for e := range m.Engines {
		if e != name {
			n++
		}
	}
	return n, m.Err
}

// KeepInstance keeps an instance.
func (m *Mem) KeepInstance(_ context.Context, id string, keep stale.Keep) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.Instances[id]
	if !ok {
		return store.ErrNotFound
	}
	in.Keep = &keep
	m.Instances[id] = in
	m.Events = append(m.Events, store.Event{Message: "kept by " + keep.By, InstanceID: id})
	return m.Err
}

// UnkeepInstance ends an instance's keep now.
func (m *Mem) UnkeepInstance(_ context.Context, id, by string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.Instances[id]
	switch {
	case !ok:
		return store.ErrNotFound
	case in.Keep == nil || !in.Keep.ActiveAt(m.Now()):
		return store.ErrNoKeep
	}
	ended := *in.Keep
	ended.Until = m.Now()
	in.Keep = &ended
	m.Instances[id] = in
	m.Events = append(m.Events, store.Event{Message: "keep lifted by " + by, InstanceID: id})
	return m.Err
}
