package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/enginefake"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// memStore keeps instances, jobs, events and alert occurrences in memory,
// with the store's semantics for one process: the unit layer of the job path.
type memStore struct {
	mu          sync.Mutex
	days        int64
	instances   map[string]stale.Instance
	jobs        []store.Job
	events      []store.Event
	occurrences map[string]bool
}

func newMemStore() *memStore {
	return &memStore{days: 7, instances: map[string]stale.Instance{}, occurrences: map[string]bool{}}
}

func (m *memStore) Instance(_ context.Context, id string) (stale.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.instances[id]
	if !ok {
		return stale.Instance{}, store.ErrNotFound
	}
	return in, nil
}

func (m *memStore) ThresholdDays(context.Context) (int64, error) { return m.days, nil }

func (m *memStore) OtherEngines(context.Context, string) (int, error) { return 0, nil }

func (m *memStore) enqueueLocked(req store.JobRequest) (store.Job, bool, error) {
	in, ok := m.instances[req.InstanceID]
	if !ok {
		return store.Job{}, false, store.ErrNotFound
	}
	for _, j := range m.jobs {
		if j.InstanceID == req.InstanceID && j.State != store.JobDone {
			return j, false, nil
		}
	}
	j := store.Job{ID: int64(len(m.jobs) + 1), InstanceID: req.InstanceID, ContainerID: req.ContainerID, Trigger: req.Trigger,
		RequestedBy: req.RequestedBy, State: store.JobPending, CreatedAt: time.Now(), DockerHost: in.DockerHost}
	m.jobs = append(m.jobs, j)
	return j, true, nil
}

func (m *memStore) EnqueueJob(_ context.Context, req store.JobRequest) (store.Job, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enqueueLocked(req)
}

func (m *memStore) ClaimJob(context.Context, time.Duration, string, stale.UnownedMode) (store.Job, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, j := range m.jobs {
		if j.State == store.JobPending {
			m.jobs[i].State, m.jobs[i].Attempts = store.JobRunning, j.Attempts+1
			return m.jobs[i], true, nil
		}
	}
	return store.Job{}, false, nil
}

func (m *memStore) MarkRemoving(_ context.Context, job store.Job, checkedStatus, target string, judged time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[job.InstanceID]
	if in.Status != checkedStatus || in.ContainerID != job.ContainerID {
		return store.ErrStatusChanged
	}
	in.Status = stale.StatusRemoving
	m.instances[job.InstanceID] = in
	j := &m.jobs[job.ID-1]
	j.PreviousStatus, j.TargetContainerID, j.JudgedLastAlive = checkedStatus, target, judged
	return nil
}

func (m *memStore) FinishRemoved(_ context.Context, job store.Job, event func(bool) store.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[job.ID-1].State, m.jobs[job.ID-1].Result = store.JobDone, store.ResultRemoved
	in, ok := m.instances[job.InstanceID]
	kept := ok && (in.Status != stale.StatusRemoving || in.ContainerID != job.ContainerID)
	if kept && in.Status == stale.StatusRemoving {
		in.Status = job.PreviousStatus
		m.instances[job.InstanceID] = in
	}
	if ok && !kept {
		delete(m.instances, job.InstanceID)
	}
	m.events = append(m.events, event(kept))
	return nil
}

func (m *memStore) FinishJob(_ context.Context, job store.Job, result, code, reason string, e store.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := &m.jobs[job.ID-1]
	j.State, j.Result, j.Code, j.Reason = store.JobDone, result, code, reason
	if in, ok := m.instances[job.InstanceID]; ok && in.Status == stale.StatusRemoving && j.PreviousStatus != "" {
		in.Status = j.PreviousStatus
		m.instances[job.InstanceID] = in
	}
	m.events = append(m.events, e)
	return nil
}

func (m *memStore) RetryJob(_ context.Context, job store.Job, code, reason string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := &m.jobs[job.ID-1]
	j.State, j.Code, j.Reason = store.JobPending, code, reason
	return nil
}

func (m *memStore) Jobs(_ context.Context, ids []int64) ([]store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Job
	for _, id := range ids {
		out = append(out, m.jobs[id-1])
	}
	return out, nil
}

func (m *memStore) RecentJobs(_ context.Context, limit int) ([]store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobs[max(0, len(m.jobs)-limit):], nil
}

func (m *memStore) LastRemoval(_ context.Context, id string) (store.Job, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.jobs {
		if j.InstanceID == id && j.Result == store.ResultRemoved {
			return j, true, nil
		}
	}
	return store.Job{}, false, nil
}

func (m *memStore) RecordAlert(_ context.Context, occ store.AlertOccurrence, e store.Event, req *store.JobRequest) (bool, store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := occ.Fingerprint + occ.StartsAt.String()
	if m.occurrences[key] {
		return false, store.Job{}, nil
	}
	m.occurrences[key] = true
	m.events = append(m.events, e)
	if req == nil {
		return true, store.Job{}, nil
	}
	job, _, err := m.enqueueLocked(*req)
	if err == store.ErrNotFound {
		return true, store.Job{}, nil
	}
	return true, job, err
}

func (m *memStore) ExpirableJobs(context.Context, time.Time, int) ([]store.Job, error) {
	return nil, nil
}

func (m *memStore) ExpireJob(context.Context, store.Job, string, string, string, store.Event) error {
	return nil
}

func (m *memStore) Prune(context.Context, time.Time) (store.Pruned, error) {
	return store.Pruned{}, nil
}

// scans is the latest scan as the guard and bulk see it.
type scans struct {
	snap      *stale.Snapshot
	succeeded bool
}

func (s scans) Latest(context.Context) (*stale.Snapshot, bool, error) {
	return s.snap, s.succeeded, nil
}

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type unit struct {
	st     *memStore
	engine *enginefake.Engine
	svc    *cleanup.Service
}

func newUnit(t *testing.T, snap scans) *unit {
	u := &unit{st: newMemStore(), engine: &enginefake.Engine{}}
	u.svc = cleanup.NewService(u.st, u.engine, snap, cleanup.Config{DockerHost: testHost, Unowned: stale.UnownedOn, RetryBackoff: time.Millisecond,
		Workers: 2, DockerTimeout: time.Second, MaxStaleRatio: 0.5, PollInterval: 10 * time.Millisecond,
		Now: func() time.Time { return now },
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return u
}

// add creates an instance and its container; state "" leaves the container out.
func (u *unit) add(id, state string, lastAlive time.Time, labels map[string]string) {
	cid := fmt.Sprintf("%064x", len(u.st.instances)+1)
	u.st.instances[id] = stale.Instance{ID: id, ContainerID: cid, Status: stale.StatusStopped, CreatedAt: lastAlive, LastAliveAt: lastAlive}
	if state == "" {
		return
	}
	l := map[string]string{stale.LabelInstanceID: id}
	for k, v := range labels {
		l[k] = v
	}
	u.engine.Add(enginefake.Container{ID: cid, State: state, Labels: l, Created: lastAlive, FinishedAt: lastAlive})
}

// run carries out the pending jobs and returns when they are done.
func (u *unit) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.svc.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		u.st.mu.Lock()
		pending := 0
		for _, j := range u.st.jobs {
			if j.State != store.JobDone {
				pending++
			}
		}
		u.st.mu.Unlock()
		if pending == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestDryRunJudgesWithAReason(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	u := newUnit(t, scans{succeeded: true, snap: &stale.Snapshot{}})
	u.add("stale", "exited", long, nil)
	u.add("missing", "", long, nil)
	u.add("running", "running", long, nil)
	u.add("kept", "exited", long, map[string]string{stale.LabelKeep: "true"})
	u.add("recent", "exited", now.Add(-time.Hour), nil)
	u.add("foreign", "exited", long, map[string]string{stale.LabelInstanceID: "someone-else"})
	u.add("removing", "exited", long, nil)
	in := u.st.instances["removing"]
	in.Status = stale.StatusRemoving
	u.st.instances["removing"] = in
	u.add("shared", "exited", long, nil)
	u.engine.Add(enginefake.Container{ID: fmt.Sprintf("%064x", 999), State: "running", Labels: map[string]string{stale.LabelInstanceID: "shared"}})
	u.add("nothing", "", long, nil)
	in = u.st.instances["nothing"]
	in.ContainerID = ""
	u.st.instances["nothing"] = in
	u.add("keep-yes", "exited", long, map[string]string{stale.LabelKeep: "yes"})
	u.add("keep-TRUE", "exited", long, map[string]string{stale.LabelKeep: "TRUE"})
	for id, want := range map[string]struct{ result, reasonHas string }{
		"stale":     {cleanup.ResultWouldRemove, ""},
		"missing":   {cleanup.ResultWouldRemove, ""},
		"running":   {store.ResultSkipped, "running"},
		"kept":      {store.ResultSkipped, stale.LabelKeep},
		"recent":    {store.ResultSkipped, "not stale: last alive 1h0m0s ago, threshold 168h0m0s"},
		"foreign":   {store.ResultSkipped, "does not carry"},
		"shared":    {store.ResultSkipped, "another container carries"},
		"nothing":   {store.ResultSkipped, "instance has no container"},
		"keep-yes":  {store.ResultSkipped, "not a boolean"},
		"keep-TRUE": {store.ResultSkipped, stale.LabelKeep},
		"removing":  {store.ResultSkipped, "already being removed"},
	} {
		job, err := u.svc.Request(context.Background(), id, cleanup.TriggerSingle, "test", true)
		if err != nil || job.Result != want.result || !strings.Contains(job.Reason, want.reasonHas) || job.ID != 0 {
			t.Errorf("%s: %s %q (job %d, %v), want %s with %q", id, job.Result, job.Reason, job.ID, err, want.result, want.reasonHas)
		}
	}
	if _, err := u.svc.Request(context.Background(), "nobody", cleanup.TriggerSingle, "test", true); err != cleanup.ErrUnknownInstance {
		t.Errorf("unknown instance: %v", err)
	}
	u.st.days = 365000
	if job, _ := u.svc.Request(context.Background(), "stale", cleanup.TriggerSingle, "test", true); job.Result != store.ResultFailed ||
		!strings.Contains(job.Reason, "out of range") {
		t.Errorf("threshold out of range: %s %q, want failed", job.Result, job.Reason)
	}
	if u.engine.Removes != 0 || len(u.st.jobs) != 0 {
		t.Fatal("a dry run removed something or made a job")
	}
}

func TestJobsRemoveOnlyWhatTheyMay(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	u := newUnit(t, scans{succeeded: true, snap: &stale.Snapshot{Observations: make([]stale.Observation, 4)}})
	u.add("stale", "exited", long, nil)
	u.add("running", "running", long, nil)
	u.add("lost-answer", "exited", long, nil)
	for _, id := range []string{"stale", "running"} {
		if _, err := u.svc.Request(context.Background(), id, cleanup.TriggerSingle, "test", false); err != nil {
			t.Fatal(err)
		}
	}
	u.run(t)
	u.engine.LoseRemoveAnswer = true
	if _, err := u.svc.Request(context.Background(), "lost-answer", cleanup.TriggerBulk, "test", false); err != nil {
		t.Fatal(err)
	}
	u.run(t)
	want := map[string]string{"stale": store.ResultRemoved, "running": store.ResultSkipped, "lost-answer": store.ResultRemoved}
	for _, j := range u.st.jobs {
		if j.Result != want[j.InstanceID] {
			t.Errorf("%s: %s %q, want %s", j.InstanceID, j.Result, j.Reason, want[j.InstanceID])
		}
	}
	if _, ok := u.st.instances["stale"]; ok {
		t.Error("the removed instance's row is still there")
	}
	if in := u.st.instances["running"]; in.Status != stale.StatusStopped || !u.engine.Exists(in.ContainerID) {
		t.Errorf("the running instance was touched: %+v", in)
	}
	// Asking again for a removed instance answers the job that removed it.
	if job, err := u.svc.Request(context.Background(), "stale", cleanup.TriggerSingle, "test", false); err != nil || job.Result != store.ResultRemoved {
		t.Errorf("request after removal: %+v %v", job, err)
	}
}

// The mass-stale guard refuses automatic cleanups, never a person's.
func TestMassStaleGuard(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	crowded := &stale.Snapshot{Observations: []stale.Observation{{Verdict: stale.Verdict{Stale: true}}, {Verdict: stale.Verdict{Stale: true}}, {}}}
	for name, c := range map[string]struct {
		scans   scans
		trigger string
		want    string
	}{
		"person, crowded":   {scans{crowded, true}, cleanup.TriggerSingle, cleanup.ResultWouldRemove},
		"bulk, crowded":     {scans{crowded, true}, cleanup.TriggerBulk, "2 of 3 instances are stale"},
		"webhook, crowded":  {scans{crowded, true}, cleanup.TriggerWebhook, "2 of 3 instances are stale"},
		"webhook, failed":   {scans{crowded, false}, cleanup.TriggerWebhook, "latest scan failed"},
		"webhook, no crowd": {scans{&stale.Snapshot{Observations: crowded.Observations[1:]}, true}, cleanup.TriggerWebhook, cleanup.ResultWouldRemove},
	} {
		u := newUnit(t, c.scans)
		u.add("a", "exited", long, nil)
		job, err := u.svc.Request(context.Background(), "a", c.trigger, "test", true)
		if err != nil || !strings.Contains(job.Result+" "+job.Reason, c.want) {
			t.Errorf("%s: %s %q, want %q", name, job.Result, job.Reason, c.want)
		}
	}
}

func TestHandleAlertJudgesEachAlert(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	u := newUnit(t, scans{succeeded: true, snap: &stale.Snapshot{}})
	const id = "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	u.add(id, "exited", long, nil)
	alert := func(status, name string, labels template.KV, startsAt time.Time) template.Alert {
		l := template.KV{"alertname": name, stale.KeyInstanceID: id, stale.KeyContainerID: u.st.instances[id].ContainerID}
		for k, v := range labels {
			l[k] = v
		}
		return template.Alert{Status: status, Labels: l, StartsAt: startsAt, Fingerprint: "fp-" + status + name + fmt.Sprint(len(labels))}
	}
	cleanupLabel := template.KV{"action": "cleanup"}
	for _, c := range []struct {
		name  string
		alert template.Alert
		want  string
	}{
		{"resolved", alert("resolved", cleanup.StaleAlertName, nil, now), cleanup.AlertResolved},
		{"unknown status", alert("pending", cleanup.StaleAlertName, nil, now), cleanup.AlertInvalid},
		{"other alert", alert("firing", "Other", nil, now), cleanup.AlertIgnored},
		{"no valid instance id", alert("firing", cleanup.StaleAlertName, template.KV{stale.KeyInstanceID: "not an id"}, now), cleanup.AlertInvalid},
		{"no start", alert("firing", cleanup.StaleAlertName, nil, time.Time{}), cleanup.AlertInvalid},
		{"warn only", alert("firing", cleanup.StaleAlertName, nil, now), cleanup.AlertRecorded},
		{"repeat", alert("firing", cleanup.StaleAlertName, nil, now), cleanup.AlertDuplicate},
		{"cleanup", alert("firing", cleanup.StaleAlertName, cleanupLabel, now), cleanup.AlertCleanupRequested},
	} {
		o, err := u.svc.HandleAlert(context.Background(), c.alert, "alertmanager")
		if err != nil || o.Result != c.want {
			t.Errorf("%s: %s (%s) %v, want %s", c.name, o.Result, o.Detail, err, c.want)
		}
	}
	if len(u.st.events) != 2 || len(u.st.jobs) != 1 || u.st.jobs[0].Trigger != cleanup.TriggerWebhook {
		t.Fatalf("events %d, jobs %+v: want one warning per occurrence and one webhook job", len(u.st.events), u.st.jobs)
	}
	// An occurrence for an instance removed since: recorded, nothing to clean.
	delete(u.st.instances, id)
	o, err := u.svc.HandleAlert(context.Background(), alert("firing", cleanup.StaleAlertName, template.KV{"action": "cleanup", "x": "1"}, now.Add(time.Hour)), "am")
	if err != nil || o.Result != cleanup.AlertRecorded || !strings.Contains(o.Detail, "no longer exists") {
		t.Fatalf("alert for a removed instance: %+v %v", o, err)
	}
}

func TestBulkTakesTheLongestStaleFirst(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	snap := &stale.Snapshot{}
	u := newUnit(t, scans{succeeded: true, snap: snap})
	for i, age := range []time.Duration{10, 30, 20} {
		id := fmt.Sprint("i", i)
		u.add(id, "exited", long, nil)
		snap.Observations = append(snap.Observations, stale.Observation{Instance: u.st.instances[id],
			Verdict: stale.Verdict{Stale: true, LastAlive: now.Add(-age * time.Hour)}}, stale.Observation{}, stale.Observation{})
	}
	jobs, staleCount, err := u.svc.Bulk(context.Background(), 2, "admin", true)
	if err != nil || staleCount != 3 || len(jobs) != 2 || jobs[0].InstanceID != "i1" || jobs[1].InstanceID != "i2" {
		t.Fatalf("bulk: %d stale, jobs %+v, %v; want i1 then i2", staleCount, jobs, err)
	}
	if jobs, err := u.svc.Wait(context.Background(), jobs); err != nil || jobs[0].Result != cleanup.ResultWouldRemove {
		t.Fatalf("wait on dry runs: %+v %v", jobs, err)
	}
	if _, _, err := newUnit(t, scans{}).svc.Bulk(context.Background(), 2, "admin", false); err == nil {
		t.Fatal("bulk without a recent scan did not fail")
	}
}

// Only the owner's exporter judges or removes an instance; a request to
// another replica becomes a job for the owner.
func TestOnlyTheOwnerJudges(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	u := newUnit(t, scans{succeeded: true, snap: &stale.Snapshot{}})
	u.add("theirs", "exited", long, nil)
	in := u.st.instances["theirs"]
	in.DockerHost = "host-b"
	u.st.instances["theirs"] = in
	job, err := u.svc.Request(context.Background(), "theirs", cleanup.TriggerSingle, "test", true)
	if err != nil || job.Result != store.ResultSkipped || !strings.Contains(job.Reason, `owned by Docker host "host-b"`) {
		t.Fatalf("dry run of another host's instance: %s %q %v", job.Result, job.Reason, err)
	}
	// A real request is queued; the store gives it to its owner's exporter
	// only (memStore does not filter, so here the re-check must refuse it).
	if _, err := u.svc.Request(context.Background(), "theirs", cleanup.TriggerSingle, "test", false); err != nil {
		t.Fatal(err)
	}
	u.run(t)
	if j := u.st.jobs[0]; u.engine.Removes != 0 || j.Result != store.ResultSkipped || !strings.Contains(j.Reason, "host-b") {
		t.Fatalf("another host's job: %s %q, %d removes", j.Result, j.Reason, u.engine.Removes)
	}
}

// frozenStore answers late, whatever the deadline, as a store call of an
// exporter that was itself frozen (SIGSTOP) past its deadline does.
type frozenStore struct {
	*memStore
	freeze time.Duration
}

func (f frozenStore) Instance(ctx context.Context, id string) (stale.Instance, error) {
	time.Sleep(f.freeze)
	if err := ctx.Err(); err != nil {
		return stale.Instance{}, err
	}
	return f.memStore.Instance(ctx, id)
}

// A request whose store call came back past its deadline says what timed
// out, its limit and how long it really waited: a frozen exporter, not a
// slow PostgreSQL, waits far past the limit.
func TestTimeoutsSayWhatAndHowLong(t *testing.T) {
	st := frozenStore{memStore: newMemStore(), freeze: 600 * time.Millisecond}
	svc := cleanup.NewService(st, &enginefake.Engine{}, scans{}, cleanup.Config{DockerHost: testHost, Workers: 1,
		StoreTimeout: 100 * time.Millisecond}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	_, err := svc.Request(context.Background(), "a", cleanup.TriggerSingle, "test", false)
	var timeout *cleanup.TimeoutError
	if !errors.As(err, &timeout) || timeout.Limit != 100*time.Millisecond || timeout.Waited < 600*time.Millisecond ||
		!strings.Contains(err.Error(), "request the cleanup of a: no answer within --store.timeout (100ms; waited 6") {
		t.Fatalf("error %v, want a timeout naming the request, its limit and the real wait", err)
	}
}
