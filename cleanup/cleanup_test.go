package cleanup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

func TestEachTriggerRemovesAStaleContainer(t *testing.T) {
	e := newEnv(t, envOptions{})
	// Running instances keep the stale share under the mass-stale guard.
	e.runningInstances(3)

	apiID, apiCID := e.staleInstance("shop")
	r := e.do(http.MethodPost, "/api/containers/stale/"+apiID+"/cleanup", auth.RoleOperator, "", nil)
	if job := decode[jobJSON](t, r.Data); r.status != http.StatusOK || job.Result != store.ResultRemoved || job.Requested != "test-operator" {
		t.Fatalf("REST cleanup: %d %+v %s", r.status, job, r.Error)
	}

	bulkID, bulkCID := e.staleInstance("shop")
	r = e.postJSON("/api/containers/stale/cleanup", auth.RoleAdmin, map[string]any{"max": 10})
	bulk := decode[struct {
		Stale   int       `json:"stale"`
		Results []jobJSON `json:"results"`
	}](t, r.Data)
	if r.status != http.StatusOK || bulk.Stale != 1 || len(bulk.Results) != 1 || bulk.Results[0].InstanceID != bulkID ||
		bulk.Results[0].Result != store.ResultRemoved {
		t.Fatalf("bulk cleanup: %d %+v %s", r.status, bulk, r.Error)
	}

	hookID, hookCID := e.staleInstance("shop")
	r = e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(hookID, hookCID, true, time.Now())))
	if r.status != http.StatusOK || !strings.Contains(string(r.Data), `"result":"cleanup_requested"`) {
		t.Fatalf("webhook: %d %s %s", r.status, r.Data, r.Error)
	}
	if result, reason := e.waitJobs(hookID); result != store.ResultRemoved {
		t.Fatalf("webhook job: %s %s", result, reason)
	}

	for _, c := range []struct{ id, cid string }{{apiID, apiCID}, {bulkID, bulkCID}, {hookID, hookCID}} {
		if e.containerExists(c.cid) {
			t.Errorf("container %s still exists", c.cid)
		}
		if e.instanceExists(c.id) {
			t.Errorf("instance row %s still exists", c.id)
		}
		if n := e.removalEvents(c.id); n != 1 {
			t.Errorf("instance %s: %d removal events, want 1", c.id, n)
		}
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", hookID); n != 1 {
		t.Errorf("webhook: %d stale warnings, want 1", n)
	}
	for _, trigger := range []store.Trigger{store.TriggerSingle, store.TriggerBulk, store.TriggerWebhook} {
		if v := counterValue(t, e, "stale_exporter_cleanups_total", map[string]string{"trigger": string(trigger), "result": "removed"}); v != 1 {
			t.Errorf("stale_exporter_cleanups_total{trigger=%q,result=removed} = %v, want 1", trigger, v)
		}
	}
	if v := counterValue(t, e, "stale_exporter_webhook_alerts_total", map[string]string{"result": cleanup.AlertCleanupRequested}); v != 1 {
		t.Errorf("stale_exporter_webhook_alerts_total{result=cleanup_requested} = %v, want 1", v)
	}
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestRunningContainerIsNeverRemoved names a running container in every way
// a cleanup can be asked for, including with a snapshot that still believes
// it stale, and checks that it survives with its row and status intact.
func TestRunningContainerIsNeverRemoved(t *testing.T) {
	e := newEnv(t, envOptions{cacheTTL: time.Minute})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	// The scan sees it stale; then it starts before anyone acts.
	if r := e.scanner.Rescan(context.Background()); !r.Success || r.Snapshot.StaleCount() != 1 {
		t.Fatalf("scan: %+v", r)
	}
	if _, err := e.docker.ContainerStart(context.Background(), cid, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}

	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleAdmin, "", nil)
	if r.status != http.StatusConflict || !strings.Contains(r.Error, "running") {
		t.Fatalf("REST: %d %q, want 409 running", r.status, r.Error)
	}
	if _, _, err := e.svc.Bulk(context.Background(), 10, "test", false); err != nil {
		t.Fatal(err)
	}
	e.waitJobs(id)
	r = e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now())))
	if r.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.status, r.Error)
	}
	if result, reason := e.waitJobs(id); result != store.ResultSkipped || !strings.Contains(reason, "running") {
		t.Fatalf("webhook job: %s %q", result, reason)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND result = 'skipped'", id); n != 3 {
		t.Errorf("%d skipped jobs, want 3 (REST, bulk, webhook)", n)
	}
	if !e.containerRunning(cid) || !e.instanceExists(id) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatalf("running container harmed: running=%v row=%v status=%q", e.containerRunning(cid), e.instanceExists(id), e.instanceStatus(id))
	}
	if e.engine.removes.Load() != 0 {
		t.Fatalf("%d containers removed", e.engine.removes.Load())
	}
}

func TestReplacedContainerIsSkipped(t *testing.T) {
	e := newEnv(t, envOptions{noWorkers: true})
	id, cid := e.staleInstance("shop")
	job, err := e.svc.Request(context.Background(), id, store.TriggerSingle, "test", false)
	if err != nil || job.State != store.JobPending {
		t.Fatalf("request: %+v %v", job, err)
	}
	// The platform redeploys the instance before the job runs.
	e.db.Exec(t, "UPDATE instances SET container_id = 'new-container' WHERE id = $1", id)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	e.startWorkers(ctx, &wg)
	defer func() { cancel(); wg.Wait() }()

	if result, reason := e.waitJobs(id); result != store.ResultSkipped || !strings.Contains(reason, "replaced") {
		t.Fatalf("job: %s %q, want skipped as replaced", result, reason)
	}
	if !e.containerExists(cid) || !e.instanceExists(id) {
		t.Fatal("the old container or the row was removed")
	}
}

func TestConcurrentRequestsRemoveOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	alert := staleAlert(id, cid, true, time.Now().Truncate(time.Second))

	var wg sync.WaitGroup
	responses := make(chan response, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%3 == 0 {
				responses <- e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(alert))
			} else {
				responses <- e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
			}
		}()
	}
	wg.Wait()
	close(responses)
	jobIDs := map[int64]bool{}
	for r := range responses {
		if r.status != http.StatusOK {
			t.Errorf("response %d: %s %s", r.status, r.Data, r.Error)
			continue
		}
		if job := decode[jobJSON](t, r.Data); job.JobID != 0 {
			jobIDs[job.JobID] = true
			if job.Result != store.ResultRemoved {
				t.Errorf("REST answer: %+v, want the removal", job)
			}
		}
	}
	e.waitJobs(id)
	if len(jobIDs) != 1 {
		t.Errorf("REST answers name %d jobs, want one shared job", len(jobIDs))
	}
	if n := e.engine.removes.Load(); n != 1 {
		t.Errorf("Docker removals = %d, want 1", n)
	}
	if n := e.removalEvents(id); n != 1 {
		t.Errorf("removal events = %d, want 1", n)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", id); n != 1 {
		t.Errorf("stale warnings = %d, want 1 for 10 deliveries of one alert", n)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND result = 'removed'", id); n != 1 {
		t.Errorf("removed jobs = %d, want 1", n)
	}
	if e.containerExists(cid) || e.instanceExists(id) {
		t.Error("not removed")
	}
}

// TestTwoReplicasDoEachJobOnce runs two services with their own connection
// pools and workers on one database, as two replicas would.
func TestTwoReplicasDoEachJobOnce(t *testing.T) {
	a := newEnv(t, envOptions{noWorkers: true})
	b := newEnv(t, envOptions{noWorkers: true, db: a.db})
	for range 12 {
		a.runningInstance("web")
	}
	var ids []string
	for range 10 {
		id, _ := a.staleInstance("shop")
		ids = append(ids, id)
		if _, err := a.svc.Request(context.Background(), id, store.TriggerSingle, "test", false); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	a.startWorkers(ctx, &wg)
	b.startWorkers(ctx, &wg)
	defer func() { cancel(); wg.Wait() }()
	for _, id := range ids {
		if result, reason := a.waitJobs(id); result != store.ResultRemoved {
			t.Errorf("instance %s: %s %q", id, result, reason)
		}
	}
	if n := a.engine.removes.Load() + b.engine.removes.Load(); n != 10 {
		t.Errorf("removals = %d, want 10", n)
	}
	if a.engine.removes.Load() == 0 || b.engine.removes.Load() == 0 {
		t.Logf("one replica did all the work (a=%d, b=%d)", a.engine.removes.Load(), b.engine.removes.Load())
	}
	if n := a.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE attempts <> 1"); n != 0 {
		t.Errorf("%d jobs claimed more than once", n)
	}
	if n := a.db.Count(t, "SELECT count(*) FROM event_log WHERE message LIKE 'removed %'"); n != 10 {
		t.Errorf("removal events = %d, want 10", n)
	}
}

// TestInterruptedJobIsResumed leaves a job as a worker that died between
// marking the instance removing and removing the container would, and
// checks that a restarted service finishes it once the lease runs out.
func TestInterruptedJobIsResumed(t *testing.T) {
	const lease = 2 * time.Second
	e := newEnv(t, envOptions{noWorkers: true, lease: lease})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	keptID, keptCID := e.staleInstance("shop")
	ctx := context.Background()
	for _, c := range []struct{ instance, container string }{{id, cid}, {keptID, keptCID}} {
		if _, err := e.svc.Request(ctx, c.instance, store.TriggerSingle, "test", false); err != nil {
			t.Fatal(err)
		}
		e.markAsAWorkerWould(lease, c.container)
	}
	if e.instanceStatus(id) != stale.StatusRemoving {
		t.Fatal("instance not marked removing")
	}
	// While the worker was gone, someone started the second container.
	if _, err := e.docker.ContainerStart(ctx, keptCID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	e.startWorkers(wctx, &wg)
	defer func() { cancel(); wg.Wait() }()

	if result, reason := e.waitJobs(id); result != store.ResultRemoved {
		t.Fatalf("resumed job: %s %q", result, reason)
	}
	if e.containerExists(cid) || e.instanceExists(id) || e.removalEvents(id) != 1 {
		t.Fatal("resumed job did not finish the removal")
	}
	if n := e.db.Count(t, "SELECT attempts FROM cleanup_jobs WHERE instance_id = $1", id); n != 2 {
		t.Errorf("attempts = %d, want 2", n)
	}
	if result, reason := e.waitJobs(keptID); result != store.ResultSkipped || !strings.Contains(reason, "running") {
		t.Fatalf("job of the restarted container: %s %q", result, reason)
	}
	if !e.containerRunning(keptCID) || e.instanceStatus(keptID) != stale.StatusStopped {
		t.Fatalf("restarted container: running=%v status=%q, want running and status restored", e.containerRunning(keptCID), e.instanceStatus(keptID))
	}
}

func TestMassStaleGuardAndDryRun(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstance("web")
	var staleIDs []string
	cids := map[string]string{}
	for range 3 {
		id, cid := e.staleInstance("shop")
		staleIDs = append(staleIDs, id)
		cids[id] = cid
	}
	// 3 of 4 staleIDs: bulk and webhook refuse, with the reason.
	r := e.postJSON("/api/containers/stale/cleanup", auth.RoleAdmin, map[string]any{})
	bulk := decode[struct{ Results []jobJSON }](t, r.Data)
	if r.status != http.StatusOK || len(bulk.Results) != 3 {
		t.Fatalf("bulk: %d %s", r.status, r.Data)
	}
	for _, j := range bulk.Results {
		if j.Result != store.ResultSkipped || !strings.Contains(j.Reason, "mass-stale guard: 3 of 4") {
			t.Errorf("bulk under guard: %+v", j)
		}
	}
	e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(staleIDs[0], cids[staleIDs[0]], true, time.Now())))
	if result, reason := e.waitJobs(staleIDs[0]); result != store.ResultSkipped || !strings.Contains(reason, "mass-stale guard") {
		t.Fatalf("webhook under guard: %s %q", result, reason)
	}
	if e.engine.removes.Load() != 0 {
		t.Fatal("removed under the guard")
	}

	// 3 of 6 staleIDs: allowed. A dry run reports the set and removes nothing.
	e.runningInstance("web")
	e.runningInstance("web")
	r = e.postJSON("/api/containers/stale/cleanup?dry_run=true", auth.RoleAdmin, map[string]any{"max": 2})
	dry := decode[struct {
		Stale   int
		Results []jobJSON
	}](t, r.Data)
	if r.status != http.StatusOK || dry.Stale != 3 || len(dry.Results) != 2 {
		t.Fatalf("dry run: %d %s", r.status, r.Data)
	}
	wouldRemove := map[string]bool{}
	for _, j := range dry.Results {
		if j.Result != store.ResultWouldRemove || !j.DryRun || j.JobID != 0 {
			t.Errorf("dry run result: %+v", j)
		}
		wouldRemove[j.InstanceID] = true
	}
	for _, id := range staleIDs {
		if !e.containerExists(cids[id]) || !e.instanceExists(id) {
			t.Fatal("dry run removed something")
		}
	}
	r = e.postJSON("/api/containers/stale/cleanup", auth.RoleAdmin, map[string]any{"max": 2})
	real := decode[struct{ Results []jobJSON }](t, r.Data)
	for _, j := range real.Results {
		if j.Result != store.ResultRemoved || !wouldRemove[j.InstanceID] {
			t.Errorf("real run: %+v, dry run said %v", j, wouldRemove)
		}
	}
	if len(real.Results) != 2 || e.engine.removes.Load() != 2 {
		t.Fatalf("real run removed %d, results %d", e.engine.removes.Load(), len(real.Results))
	}
}

func TestGlobalDryRunRemovesNothing(t *testing.T) {
	e := newEnv(t, envOptions{dryRun: true})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if job := decode[jobJSON](t, r.Data); r.status != http.StatusOK || job.Result != store.ResultWouldRemove {
		t.Fatalf("REST: %d %s", r.status, r.Data)
	}
	r = e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now())))
	if r.status != http.StatusOK || !strings.Contains(string(r.Data), string(store.ResultWouldRemove)) {
		t.Fatalf("webhook: %d %s", r.status, r.Data)
	}
	if !e.containerExists(cid) || !e.instanceExists(id) || e.db.Count(t, "SELECT count(*) FROM cleanup_jobs") != 0 {
		t.Fatal("dry run acted")
	}
}

func TestListStaleAndCleanups(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstance("web")
	id, cid := e.staleInstance("shop")
	r := e.do(http.MethodGet, "/api/containers/stale", auth.RoleViewer, "", nil)
	rows := decode[[]map[string]any](t, r.Data)
	if r.status != http.StatusOK || len(rows) != 1 {
		t.Fatalf("list: %d %s", r.status, r.Data)
	}
	row := rows[0]
	if row["instance_id"] != id || row["container_id"] != cid || row["project_name"] != "shop" || row["stage_name"] != "preview" ||
		row["image_tag"] != "pr-1" || row["docker_state"] != "created" {
		t.Errorf("row: %v", row)
	}
	if days, ok := row["days_since_last_alive"].(float64); !ok || days < 0.08 || days > 0.09 {
		t.Errorf("days_since_last_alive = %v, want about 2h = 0.083", row["days_since_last_alive"])
	}
	if last, err := time.Parse(time.RFC3339, fmt.Sprint(row["last_alive"])); err != nil || clock().Sub(last) < threshold {
		t.Errorf("last_alive = %v (%v)", row["last_alive"], err)
	}

	e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup?dry_run=false", auth.RoleOperator, "", nil)
	r = e.do(http.MethodGet, "/api/cleanups?limit=5", auth.RoleViewer, "", nil)
	jobs := decode[[]jobJSON](t, r.Data)
	if len(jobs) != 1 || jobs[0].InstanceID != id || jobs[0].Trigger != store.TriggerSingle ||
		jobs[0].Requested != "test-operator" || jobs[0].Result != store.ResultRemoved {
		t.Fatalf("cleanups: %s", r.Data)
	}
	// After the removal, asking again reports the job that did it.
	r = e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if again := decode[jobJSON](t, r.Data); r.status != http.StatusOK || again.JobID != jobs[0].JobID {
		t.Fatalf("repeat after removal: %d %s", r.status, r.Data)
	}
}

func TestWebhookJudgesEachAlert(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	cleanID, cleanCID := e.staleInstance("shop")
	warnID, warnCID := e.staleInstance("shop")
	resolved := staleAlert(cleanID, cleanCID, true, time.Now().Add(-time.Hour))
	resolved.Status, resolved.Fingerprint = "resolved", "fp-old"
	other := staleAlert(warnID, warnCID, true, time.Now())
	other.Labels["alertname"], other.Fingerprint = "SomethingElse", "fp-other"
	bad := staleAlert("no pe", "", true, time.Now())
	bad.Fingerprint = "fp-bad"

	payload := webhookPayload(staleAlert(cleanID, cleanCID, true, time.Now()), staleAlert(warnID, warnCID, false, time.Now()), resolved, other, bad)
	for delivery := range 3 {
		r := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, payload)
		got := decode[struct {
			Alerts []struct{ Fingerprint, Result string }
		}](t, r.Data)
		want := []string{cleanup.AlertCleanupRequested, cleanup.AlertRecorded, cleanup.AlertWasResolved, cleanup.AlertIgnored, cleanup.AlertInvalid}
		if delivery > 0 {
			want[0], want[1] = cleanup.AlertDuplicate, cleanup.AlertDuplicate
		}
		if len(got.Alerts) != len(want) {
			t.Fatalf("delivery %d: %s", delivery, r.Data)
		}
		for i, w := range want {
			if got.Alerts[i].Result != w {
				t.Errorf("delivery %d alert %d (%s): %s, want %s", delivery, i, got.Alerts[i].Fingerprint, got.Alerts[i].Result, w)
			}
		}
	}
	if result, reason := e.waitJobs(cleanID); result != store.ResultRemoved {
		t.Fatalf("cleanup alert: %s %q", result, reason)
	}
	if !e.instanceExists(warnID) || !e.containerExists(warnCID) {
		t.Fatal("the alert without action=cleanup removed its container")
	}
	for id, want := range map[string]int{cleanID: 1, warnID: 1} {
		if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", id); n != want {
			t.Errorf("instance %s: %d warnings, want %d", id, n, want)
		}
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1", warnID); n != 0 {
		t.Errorf("the alert without action=cleanup made %d jobs", n)
	}
}

// TestWebhookForRemovedInstance is the alert that still fires for an
// instance removed since: recorded once, no job, and a 200 so that
// Alertmanager does not retry it forever.
func TestWebhookForRemovedInstance(t *testing.T) {
	e := newEnv(t, envOptions{})
	gone := "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	r := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(gone, "c", true, time.Now())))
	if r.status != http.StatusOK || !strings.Contains(string(r.Data), `"result":"recorded"`) {
		t.Fatalf("webhook: %d %s %s", r.status, r.Data, r.Error)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs"); n != 0 {
		t.Fatalf("%d jobs for a removed instance", n)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", gone); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func counterValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}
