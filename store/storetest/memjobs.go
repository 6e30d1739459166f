package storetest

import (
	"context"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

func (m *Mem) enqueueLocked(req store.JobRequest) (store.Job, bool, error) {
	in, ok := m.Instances[req.InstanceID]
	if !ok {
		return store.Job{}, false, store.ErrNotFound
	}
	for _, j := range m.JobRows {
		if j.InstanceID == req.InstanceID && j.State != store.JobDone {
			return j, false, nil
		}
	}
	j := store.Job{ID: int64(len(m.JobRows) + 1), InstanceID: req.InstanceID, ContainerID: req.ContainerID, Trigger: req.Trigger,
		RequestedBy: req.RequestedBy, State: store.JobPending, CreatedAt: time.Now(), DockerHost: in.DockerHost}
	m.JobRows = append(m.JobRows, j)
	return j, true, nil
}

// EnqueueJob adds a job unless one is in flight for the instance.
func (m *Mem) EnqueueJob(_ context.Context, req store.JobRequest) (store.Job, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return store.Job{}, false, m.Err
	}
	return m.enqueueLocked(req)
}

// LeaseJob takes the oldest pending job of dockerHost, or of an unowned
// instance while the mode judges those.
func (m *Mem) LeaseJob(_ context.Context, _ time.Duration, dockerHost string, unowned stale.UnownedMode) (store.Job, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	others := 0
	for e := range m.Engines {
		if e != dockerHost {
			others++
		}
	}
	for i, j := range m.JobRows {
		if j.State == store.JobPending && (j.DockerHost == dockerHost || j.DockerHost == "" && unowned.JudgesUnowned(others)) {
			m.JobRows[i].State, m.JobRows[i].Attempts = store.JobRunning, j.Attempts+1
			return m.JobRows[i], true, nil
		}
	}
	return store.Job{}, false, nil
}

// MarkRemoving marks the instance removing and pins the job.
func (m *Mem) MarkRemoving(_ context.Context, job store.Job, checkedStatus, target string, judged time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.Instances[job.InstanceID]
	if in.Status != checkedStatus || in.ContainerID != job.ContainerID {
		return store.ErrStatusChanged
	}
	in.Status = stale.StatusRemoving
	m.Instances[job.InstanceID] = in
	j := &m.JobRows[job.ID-1]
	j.PreviousStatus, j.TargetContainerID, j.JudgedLastAlive = checkedStatus, target, judged
	return nil
}

// FinishRemoved closes the job and deletes the row if it still holds the
// removed container, else gives it its previous status back.
func (m *Mem) FinishRemoved(_ context.Context, job store.Job, event func(bool) store.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := &m.JobRows[job.ID-1]
	j.State, j.Result, j.Code, j.Reason = store.JobDone, store.ResultRemoved, "", ""
	in, ok := m.Instances[job.InstanceID]
	kept := ok && (in.Status != stale.StatusRemoving || in.ContainerID != job.ContainerID)
	switch {
	case kept && in.Status == stale.StatusRemoving:
		in.Status = job.PreviousStatus
		m.Instances[job.InstanceID] = in
	case ok && !kept:
		delete(m.Instances, job.InstanceID)
	}
	m.Events = append(m.Events, event(kept))
	return nil
}

// FinishJob closes a job that removed nothing, giving a marked instance its
// previous status back.
func (m *Mem) FinishJob(_ context.Context, job store.Job, result store.JobResult, code, reason string, e store.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := &m.JobRows[job.ID-1]
	j.State, j.Result, j.Code, j.Reason = store.JobDone, result, code, reason
	if in, ok := m.Instances[job.InstanceID]; ok && in.Status == stale.StatusRemoving && j.PreviousStatus != "" {
		in.Status = j.PreviousStatus
		m.Instances[job.InstanceID] = in
	}
	m.Events = append(m.Events, e)
	return nil
}

// RetryJob puts a job back, pending.
func (m *Mem) RetryJob(_ context.Context, job store.Job, code, reason string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := &m.JobRows[job.ID-1]
	j.State, j.Code, j.Reason = store.JobPending, code, reason
	return nil
}

// Jobs reads jobs by id.
func (m *Mem) Jobs(_ context.Context, ids []int64) ([]store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Job
	for _, id := range ids {
		out = append(out, m.JobRows[id-1])
	}
	return out, m.Err
}

// RecentJobs reads the latest jobs.
func (m *Mem) RecentJobs(_ context.Context, limit int) ([]store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.JobRows[max(0, len(m.JobRows)-limit):], m.Err
}

// LastRemoval returns the job that removed an instance.
func (m *Mem) LastRemoval(_ context.Context, id string) (store.Job, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.JobRows {
		if j.InstanceID == id && j.Result == store.ResultRemoved {
			return j, true, nil
		}
	}
	return store.Job{}, false, m.Err
}

// RecordAlert records an occurrence once, with its event and cleanup.
func (m *Mem) RecordAlert(_ context.Context, occ store.AlertOccurrence, e store.Event, req *store.JobRequest) (bool, store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return false, store.Job{}, m.Err
	}
	key := occ.Fingerprint + occ.StartsAt.String()
	if m.occurrences[key] {
		return false, store.Job{}, nil
	}
	m.occurrences[key] = true
	m.Events = append(m.Events, e)
	if req == nil {
		return true, store.Job{}, nil
	}
	job, _, err := m.enqueueLocked(*req)
	if err == store.ErrNotFound {
		return true, store.Job{}, nil
	}
	return true, job, err
}

// ExpirableJobs lists the pending jobs created before the given time.
func (m *Mem) ExpirableJobs(_ context.Context, createdBefore time.Time, limit int) ([]store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Job
	for _, j := range m.JobRows {
		if j.State == store.JobPending && j.CreatedAt.Before(createdBefore) && len(out) < limit {
			out = append(out, j)
		}
	}
	return out, m.Err
}

// ExpireJob closes a job nobody carried out.
func (m *Mem) ExpireJob(ctx context.Context, job store.Job, result store.JobResult, code, reason string, e store.Event) error {
	return m.FinishJob(ctx, job, result, code, reason, e)
}

// Prune deletes the finished jobs older than before.
func (m *Mem) Prune(_ context.Context, before time.Time) (store.Pruned, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p store.Pruned
	kept := m.JobRows[:0]
	for _, j := range m.JobRows {
		if j.State == store.JobDone && !j.FinishedAt.IsZero() && j.FinishedAt.Before(before) {
			p.Jobs++
			continue
		}
		kept = append(kept, j)
	}
	m.JobRows = kept
	return p, m.Err
}
