package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// scans is the latest scan as the guard and bulk see it.
type scans struct {
	snap      *stale.Snapshot
	succeeded bool
}

func (s scans) Result(context.Context) scan.Result {
	return scan.Result{Snapshot: s.snap, Success: s.succeeded}
}

func (s scans) Reclaimable(string) (int64, bool) { return 0, false }

func (s scans) Expire() {}

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type unit struct {
	st     *storetest.Mem
	engine *dockertest.Engine
	svc    *cleanup.Service
}

func newUnit(t *testing.T, snap scans) *unit {
	return newUnitWith(snap, cleanup.Config{})
}

// newUnitWith is newUnit with the grace and volume settings of cfg.
func newUnitWith(snap scans, cfg cleanup.Config) *unit {
	u := &unit{st: storetest.NewMem(), engine: &dockertest.Engine{}}
	u.st.Now = func() time.Time { return now }
	u.svc = cleanup.NewService(u.st, u.engine, snap, cleanup.Config{
		Config:  stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Now: func() time.Time { return now }},
		Workers: 2, MaxStaleRatio: 0.5, PollInterval: 10 * time.Millisecond, RetryBackoff: time.Millisecond,
		Grace: cfg.Grace, KeepVolumes: cfg.KeepVolumes,
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return u
}

// add creates an instance and its container; state "" leaves the container out.
func (u *unit) add(id, state string, lastAlive time.Time, labels map[string]string) {
	cid := fmt.Sprintf("%064x", len(u.st.Instances)+1)
	u.st.Instances[id] = stale.Instance{ID: id, ContainerID: cid, Status: stale.StatusStopped, CreatedAt: lastAlive, LastAliveAt: lastAlive}
	if state == "" {
		return
	}
	l := map[string]string{stale.LabelInstanceID: id}
	for k, v := range labels {
		l[k] = v
	}
	u.engine.Add(dockertest.Container{ID: cid, State: state, Labels: l, Created: lastAlive, FinishedAt: lastAlive})
}

// run carries out the pending jobs and returns when they are done.
func (u *unit) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.svc.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pending := 0
		for _, j := range u.st.JobRows {
			if j.State != store.JobDone {
				pending++
			}
		}
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
	in := u.st.Instances["removing"]
	in.Status = stale.StatusRemoving
	u.st.Instances["removing"] = in
	u.add("shared", "exited", long, nil)
	u.engine.Add(dockertest.Container{ID: fmt.Sprintf("%064x", 999), State: "running", Labels: map[string]string{stale.LabelInstanceID: "shared"}})
	u.add("nothing", "", long, nil)
	in = u.st.Instances["nothing"]
	in.ContainerID = ""
	u.st.Instances["nothing"] = in
	u.add("keep-yes", "exited", long, map[string]string{stale.LabelKeep: "yes"})
	u.add("keep-TRUE", "exited", long, map[string]string{stale.LabelKeep: "TRUE"})
	for id, want := range map[string]struct {
		result    store.JobResult
		reasonHas string
	}{
		"stale":     {store.ResultWouldRemove, ""},
		"missing":   {store.ResultWouldRemove, ""},
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
		job, err := u.svc.Request(context.Background(), id, store.TriggerSingle, "test", true)
		if err != nil || job.Result != want.result || !strings.Contains(job.Reason, want.reasonHas) || job.ID != 0 {
			t.Errorf("%s: %s %q (job %d, %v), want %s with %q", id, job.Result, job.Reason, job.ID, err, want.result, want.reasonHas)
		}
	}
	if _, err := u.svc.Request(context.Background(), "nobody", store.TriggerSingle, "test", true); err != cleanup.ErrUnknownInstance {
		t.Errorf("unknown instance: %v", err)
	}
	u.st.Days = 365000
	if job, _ := u.svc.Request(context.Background(), "stale", store.TriggerSingle, "test", true); job.Result != store.ResultFailed ||
		!strings.Contains(job.Reason, "out of range") {
		t.Errorf("threshold out of range: %s %q, want failed", job.Result, job.Reason)
	}
	if u.engine.Removes != 0 || len(u.st.JobRows) != 0 {
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
		if _, err := u.svc.Request(context.Background(), id, store.TriggerSingle, "test", false); err != nil {
			t.Fatal(err)
		}
	}
	u.run(t)
	u.engine.LoseRemoveAnswer = true
	if _, err := u.svc.Request(context.Background(), "lost-answer", store.TriggerBulk, "test", false); err != nil {
		t.Fatal(err)
	}
	u.run(t)
	want := map[string]store.JobResult{"stale": store.ResultRemoved, "running": store.ResultSkipped, "lost-answer": store.ResultRemoved}
	for _, j := range u.st.JobRows {
		if j.Result != want[j.InstanceID] {
			t.Errorf("%s: %s %q, want %s", j.InstanceID, j.Result, j.Reason, want[j.InstanceID])
		}
	}
	if _, ok := u.st.Instances["stale"]; ok {
		t.Error("the removed instance's row is still there")
	}
	if in := u.st.Instances["running"]; in.Status != stale.StatusStopped || !u.engine.Exists(in.ContainerID) {
		t.Errorf("the running instance was touched: %+v", in)
	}
	// Asking again for a removed instance answers the job that removed it.
	if job, err := u.svc.Request(context.Background(), "stale", store.TriggerSingle, "test", false); err != nil || job.Result != store.ResultRemoved {
		t.Errorf("request after removal: %+v %v", job, err)
	}
}

// The mass-stale guard refuses automatic cleanups, never a person's.
func TestMassStaleGuard(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	crowded := &stale.Snapshot{Observations: []stale.Observation{{Verdict: stale.Verdict{Stale: true}}, {Verdict: stale.Verdict{Stale: true}}, {}}}
	for name, c := range map[string]struct {
		scans   scans
		trigger store.Trigger
		want    string
	}{
		"person, crowded":   {scans{crowded, true}, store.TriggerSingle, string(store.ResultWouldRemove)},
		"bulk, crowded":     {scans{crowded, true}, store.TriggerBulk, "2 of 3 instances are stale"},
		"webhook, crowded":  {scans{crowded, true}, store.TriggerWebhook, "2 of 3 instances are stale"},
		"webhook, failed":   {scans{crowded, false}, store.TriggerWebhook, "latest scan failed"},
		"webhook, no crowd": {scans{&stale.Snapshot{Observations: crowded.Observations[1:]}, true}, store.TriggerWebhook, string(store.ResultWouldRemove)},
	} {
		u := newUnit(t, c.scans)
		u.add("a", "exited", long, nil)
		job, err := u.svc.Request(context.Background(), "a", c.trigger, "test", true)
		if err != nil || !strings.Contains(string(job.Result)+" "+job.Reason, c.want) {
			t.Errorf("%s: %s %q, want %q", name, job.Result, job.Reason, c.want)
		}
	}
}

func TestHandleAlertJudgesEachAlert(t *testing.T) {
	long := now.Add(-30 * 24 * time.Hour)
	u := newUnit(t, scans{succeeded: true, snap: &stale.Snapshot{}})
	const id = "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	u.add(id, "exited", long, nil)
	alert := func(status, name string, labels map[string]string, startsAt time.Time) cleanup.Alert {
		l := map[string]string{"alertname": name, stale.KeyInstanceID: id, stale.KeyContainerID: u.st.Instances[id].ContainerID}
		for k, v := range labels {
			l[k] = v
		}
		return cleanup.Alert{Status: status, Labels: l, StartsAt: startsAt, Fingerprint: "fp-" + status + name + fmt.Sprint(len(labels))}
	}
	with := func(change func(a *cleanup.Alert)) cleanup.Alert {
		a := alert("firing", cleanup.StaleAlertName, nil, now)
		a.Annotations = map[string]string{"summary": "stale"}
		change(&a)
		return a
	}
	cleanupLabel := map[string]string{"action": "cleanup"}
	for _, c := range []struct {
		name  string
		alert cleanup.Alert
		want  string
	}{
		// What the store could never record is invalid, never an error
		// (Alertmanager would retry it forever).
		{"NUL in a label", with(func(a *cleanup.Alert) { a.Labels["project_name"] = "sh\x00op" }), cleanup.AlertInvalid},
		{"NUL in a label name", with(func(a *cleanup.Alert) { a.Labels["a\x00"] = "x" }), cleanup.AlertInvalid},
		{"NUL in an annotation", with(func(a *cleanup.Alert) { a.Annotations["summary"] = "\x00" }), cleanup.AlertInvalid},
		{"NUL in the status", with(func(a *cleanup.Alert) { a.Status = "firing\x00" }), cleanup.AlertInvalid},
		{"long fingerprint", with(func(a *cleanup.Alert) { a.Fingerprint = strings.Repeat("f", 65) }), cleanup.AlertInvalid},
		{"resolved", alert("resolved", cleanup.StaleAlertName, nil, now), cleanup.AlertWasResolved},
		{"unknown status", alert("pending", cleanup.StaleAlertName, nil, now), cleanup.AlertInvalid},
		{"other alert", alert("firing", "Other", nil, now), cleanup.AlertIgnored},
		{"no valid instance id", alert("firing", cleanup.StaleAlertName, map[string]string{stale.KeyInstanceID: "not an id"}, now), cleanup.AlertInvalid},
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
	if len(u.st.Events) != 2 || len(u.st.JobRows) != 1 || u.st.JobRows[0].Trigger != store.TriggerWebhook {
		t.Fatalf("events %d, jobs %+v: want one warning per occurrence and one webhook job", len(u.st.Events), u.st.JobRows)
	}
	// An occurrence for an instance removed since: recorded, nothing to clean.
	delete(u.st.Instances, id)
	o, err := u.svc.HandleAlert(context.Background(), alert("firing", cleanup.StaleAlertName, map[string]string{"action": "cleanup", "x": "1"}, now.Add(time.Hour)), "am")
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
		snap.Observations = append(snap.Observations, stale.Observation{Instance: u.st.Instances[id],
			Verdict: stale.Verdict{Stale: true, LastAlive: now.Add(-age * time.Hour)}}, stale.Observation{}, stale.Observation{})
	}
	jobs, staleCount, err := u.svc.Bulk(context.Background(), 2, "admin", true)
	if err != nil || staleCount != 3 || len(jobs) != 2 || jobs[0].InstanceID != "i1" || jobs[1].InstanceID != "i2" {
		t.Fatalf("bulk: %d stale, jobs %+v, %v; want i1 then i2", staleCount, jobs, err)
	}
	if jobs, err := u.svc.Wait(context.Background(), jobs); err != nil || jobs[0].Result != store.ResultWouldRemove {
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
	in := u.st.Instances["theirs"]
	in.DockerHost = "host-b"
	u.st.Instances["theirs"] = in
	job, err := u.svc.Request(context.Background(), "theirs", store.TriggerSingle, "test", true)
	if err != nil || job.Result != store.ResultSkipped || !strings.Contains(job.Reason, `owned by Docker host "host-b"`) {
		t.Fatalf("dry run of another host's instance: %s %q %v", job.Result, job.Reason, err)
	}
	// A real request is queued for the owner's exporter only.
	job, err = u.svc.Request(context.Background(), "theirs", store.TriggerSingle, "test", false)
	if err != nil || job.DockerHost != "host-b" {
		t.Fatalf("request: %+v %v, want a job for host-b", job, err)
	}
	// Should it reach this exporter all the same (made while the instance
	// was unowned), the re-check refuses it.
	u.st.JobRows[0].DockerHost = ""
	u.run(t)
	if j := u.st.JobRows[0]; u.engine.Removes != 0 || j.Result != store.ResultSkipped || !strings.Contains(j.Reason, "host-b") {
		t.Fatalf("another host's job: %s %q, %d removes", j.Result, j.Reason, u.engine.Removes)
	}
}

// frozenStore answers late, whatever the deadline, as a store call of an
// exporter that was itself frozen (SIGSTOP) past its deadline does.
type frozenStore struct {
	*storetest.Mem
	freeze time.Duration
}

func (f frozenStore) Instance(ctx context.Context, id string) (stale.Instance, error) {
	time.Sleep(f.freeze)
	if err := ctx.Err(); err != nil {
		return stale.Instance{}, err
	}
	return f.Mem.Instance(ctx, id)
}

// A request whose store call came back past its deadline says what timed
// out, its limit and how long it really waited: a frozen exporter, not a
// slow PostgreSQL, waits far past the limit.
func TestTimeoutsSayWhatAndHowLong(t *testing.T) {
	st := frozenStore{Mem: storetest.NewMem(), freeze: 600 * time.Millisecond}
	svc := cleanup.NewService(st, &dockertest.Engine{}, scans{}, cleanup.Config{Config: stale.Config{Host: testenv.EngineName}, Workers: 1,
		StoreTimeout: 100 * time.Millisecond}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	_, err := svc.Request(context.Background(), "a", store.TriggerSingle, "test", false)
	var timeout *cleanup.TimeoutError
	if !errors.As(err, &timeout) || timeout.Limit != 100*time.Millisecond || timeout.Waited < 600*time.Millisecond ||
		!strings.Contains(err.Error(), "request the cleanup of a: no answer within --store.timeout (100ms; waited 6") {
		t.Fatalf("error %v, want a timeout naming the request, its limit and the real wait", err)
	}
}

// An automatic cleanup waits for the grace after the instance became stale,
// whatever the rules say; a person's does not. The grace counts from the
// end of a keep, if that came later.
func TestGraceBeforeAutomaticCleanup(t *testing.T) {
	crowdless := scans{succeeded: true, snap: &stale.Snapshot{Observations: make([]stale.Observation, 10)}}
	// Last alive 8 days ago, the threshold 7 days: stale for a day.
	lastAlive := now.Add(-8 * 24 * time.Hour)
	for _, c := range []struct {
		name    string
		grace   time.Duration
		keepEnd time.Time
		trigger store.Trigger
		want    string
	}{
		{"webhook within the grace", 48 * time.Hour, time.Time{}, store.TriggerWebhook, "eligible at 2026-11-24T12:00:00Z"},
		{"webhook after the grace", 12 * time.Hour, time.Time{}, store.TriggerWebhook, string(store.ResultWouldRemove)},
		{"no grace", 0, time.Time{}, store.TriggerWebhook, string(store.ResultWouldRemove)},
		{"a person, within the grace", 48 * time.Hour, time.Time{}, store.TriggerSingle, string(store.ResultWouldRemove)},
		{"a person's bulk, within the grace", 48 * time.Hour, time.Time{}, store.TriggerBulk, string(store.ResultWouldRemove)},
		{"webhook, grace from a keep's end", 12 * time.Hour, now.Add(-time.Hour), store.TriggerWebhook, "eligible at 2026-11-23T23:00:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := newUnitWith(crowdless, cleanup.Config{Grace: c.grace})
			u.add("a", "exited", lastAlive, nil)
			if !c.keepEnd.IsZero() {
				in := u.st.Instances["a"]
				in.Keep = &stale.Keep{Until: c.keepEnd, By: "ops", Reason: "demo"}
				u.st.Instances["a"] = in
			}
			job, err := u.svc.Request(context.Background(), "a", c.trigger, "test", true)
			if err != nil || !strings.Contains(string(job.Result)+" "+job.Reason, c.want) {
				t.Fatalf("%s %s %q %v, want %q", job.Result, job.Code, job.Reason, err, c.want)
			}
			if strings.HasPrefix(c.want, "eligible") && job.Code != string(cleanup.CodeGrace) {
				t.Fatalf("code %s, want grace", job.Code)
			}
		})
	}
}

// A person's keep holds in the re-check: no trigger removes a kept
// instance; a lifted keep lets it go, a person's at once.
func TestKeepHoldsInTheReCheck(t *testing.T) {
	u := newUnit(t, scans{succeeded: true, snap: &stale.Snapshot{Observations: make([]stale.Observation, 10)}})
	u.add("a", "exited", now.Add(-30*24*time.Hour), nil)
	if err := u.svc.Keep(context.Background(), "a", stale.Keep{By: "ops", Reason: "demo"}); err != nil {
		t.Fatal(err)
	}
	for _, trigger := range store.Triggers {
		job, err := u.svc.Request(context.Background(), "a", trigger, "test", true)
		if err != nil || job.Code != string(cleanup.CodeKept) || !strings.Contains(job.Reason, "kept forever by ops: demo") {
			t.Errorf("%s: %s %q %v, want kept", trigger, job.Code, job.Reason, err)
		}
	}
	if err := u.svc.Keep(context.Background(), "nobody", stale.Keep{}); !errors.Is(err, cleanup.ErrUnknownInstance) {
		t.Errorf("keep of an unknown instance: %v", err)
	}
	if err := u.svc.Unkeep(context.Background(), "a", "ops"); err != nil {
		t.Fatal(err)
	}
	if err := u.svc.Unkeep(context.Background(), "a", "ops"); !errors.Is(err, store.ErrNoKeep) {
		t.Errorf("lift twice: %v", err)
	}
	if job, _ := u.svc.Request(context.Background(), "a", store.TriggerSingle, "test", true); job.Result != store.ResultWouldRemove {
		t.Errorf("after the keep was lifted: %s %q", job.Result, job.Reason)
	}
}

// A removal takes the container's anonymous volumes with it, never a named
// one, and none with KeepVolumes; the event lists what went.
func TestRemovalTakesAnonymousVolumes(t *testing.T) {
	for _, keepVolumes := range []bool{false, true} {
		u := newUnitWith(scans{succeeded: true, snap: &stale.Snapshot{}}, cleanup.Config{KeepVolumes: keepVolumes})
		u.add("a", "", now.Add(-30*24*time.Hour), nil)
		anon, named := strings.Repeat("a1", 32), "shop-data"
		u.engine.Add(dockertest.Container{ID: u.st.Instances["a"].ContainerID, State: "exited", Created: now.Add(-30 * 24 * time.Hour),
			Labels:  map[string]string{stale.LabelInstanceID: "a"},
			Volumes: []stale.Volume{{Name: anon, Anonymous: true}, {Name: named}}})
		if _, err := u.svc.Request(context.Background(), "a", store.TriggerSingle, "test", false); err != nil {
			t.Fatal(err)
		}
		u.run(t)
		_, anonLeft := u.engine.VolumeBytes[anon]
		_, namedLeft := u.engine.VolumeBytes[named]
		event := u.st.Events[len(u.st.Events)-1]
		if u.st.JobRows[0].Result != store.ResultRemoved || anonLeft != keepVolumes || !namedLeft ||
			strings.Contains(event.Message, anon) == keepVolumes {
			t.Errorf("keep volumes %v: result %s, anonymous left %v, named left %v, event %q", keepVolumes, u.st.JobRows[0].Result,
				anonLeft, namedLeft, event.Message)
		}
	}
}
