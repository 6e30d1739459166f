package cleanup_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// The races between a cleanup's check and its removal, with the window held
// open (the instance row locked, so that the mark waits; or the engine's
// answer held), so that each is deterministic. In every one the old code
// removed the wrong container or left a false record.

// instanceWith adds a stale instance whose container is made from spec (with
// the instance's label), and returns the instance and container ids.
func (e *env) instanceWith(spec testenv.ContainerSpec) (id, containerID string) {
	e.t.Helper()
	id = e.db.AddInstance(e.t, storetest.Instance{Project: "shop", ImageTag: "pr-1", CreatedAt: time.Now().Add(-2 * threshold)})
	spec.Labels = map[string]string{stale.LabelInstanceID: id}
	containerID = testenv.NewContainer(e.t, e.docker, spec)
	e.db.Exec(e.t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, containerID)
	return id, containerID
}

// cleanupAsync asks for the cleanup of one instance and answers on the
// returned channel, so that the test can act while the job waits.
func (e *env) cleanupAsync(id string) <-chan response {
	out := make(chan response, 1)
	go func() {
		out <- e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	}()
	return out
}

// Item 4: the row holds a container name; between the check and the
// removal a redeploy replaces the container under the same name. Removing by
// the name removed the new container; the removal is by the full id that was
// inspected, and a name now naming another container is a skip.
func TestRedeployUnderTheSameNameDuringTheRemoval(t *testing.T) {
	e := newEnv(t, envOptions{})
	name := "race-" + strings.ToLower(t.Name()[4:14])
	id, oldCID := e.instanceWith(testenv.ContainerSpec{Name: name})
	e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, name)

	release := e.db.HoldRow(t, id)
	answer := e.cleanupAsync(id)
	e.db.WaitForLockWaiter(t) // checked; the mark waits
	if _, err := e.docker.ContainerRemove(context.Background(), oldCID, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	newCID := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Name: name, Labels: map[string]string{stale.LabelInstanceID: id}})
	release()

	r := <-answer
	if r.status != http.StatusConflict || r.Code != string(cleanup.CodeReplaced) {
		t.Fatalf("cleanup across a redeploy: %d %s %q, want 409 replaced", r.status, r.Code, r.Error)
	}
	if !e.containerExists(newCID) || e.engine.removes.Load() != 0 {
		t.Fatal("the redeployed container was removed")
	}
	if !e.instanceExists(id) || e.instanceStatus(id) != stale.StatusStopped || e.removalEvents(id) != 0 {
		t.Fatalf("row: exists=%v status=%q, removal events %d", e.instanceExists(id), e.instanceStatus(id), e.removalEvents(id))
	}
}

// Item 5: the container runs, and exits again, inside the window. It was
// removed; a sign of life newer than the one judged is a skip.
func TestContainerThatRanDuringTheRemovalIsKept(t *testing.T) {
	e := newEnv(t, envOptions{})
	id, cid := e.instanceWith(testenv.ContainerSpec{Exit: true})
	release := e.db.HoldRow(t, id)
	answer := e.cleanupAsync(id)
	e.db.WaitForLockWaiter(t)
	testenv.RunAgain(t, e.docker, cid)
	release()

	r := <-answer
	if r.status != http.StatusConflict || r.Code != string(cleanup.CodeRanAgain) || !strings.Contains(r.Error, "ran again") {
		t.Fatalf("cleanup of a container that ran in the window: %d %s %q, want 409 ran_again", r.status, r.Code, r.Error)
	}
	if !e.containerExists(cid) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatal("the container that ran again was removed, or its status not restored")
	}
}

// Item 6: a job interrupted after its mark is resumed without judging the
// threshold again, but never past a sign of life newer than the one judged.
func TestResumedJobKeepsAContainerThatRanAgain(t *testing.T) {
	const lease = 2 * time.Second
	e := newEnv(t, envOptions{noWorkers: true, lease: lease})
	id, cid := e.instanceWith(testenv.ContainerSpec{Exit: true})
	if _, err := e.svc.Request(context.Background(), id, store.TriggerSingle, "test", false); err != nil {
		t.Fatal(err)
	}
	e.markAsAWorkerWould(lease, cid)
	testenv.RunAgain(t, e.docker, cid) // after the mark, before the resume

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	e.startWorkers(ctx, &wg)
	defer func() { cancel(); wg.Wait() }()
	if result, reason := e.waitJobs(id); result != store.ResultSkipped || !strings.Contains(reason, "ran again") {
		t.Fatalf("resumed job: %s %q, want skipped: ran again", result, reason)
	}
	if !e.containerExists(cid) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatal("the resumed job removed a container that ran after its mark")
	}
}

// Item 7: the platform points the row at a new container while the removal
// is under way. The row was deleted, leaving the new container without one;
// the row is the new container's and stays, its status given back.
func TestRowPointedElsewhereDuringTheRemovalIsKept(t *testing.T) {
	testenv.Docker(t)
	var once sync.Once
	engineActed, proceed := make(chan struct{}), make(chan struct{})
	host := testenv.DockerProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodDelete {
			return false
		}
		testenv.EngineActs(r)
		once.Do(func() { close(engineActed) })
		<-proceed
		w.WriteHeader(http.StatusNoContent)
		return true
	})
	e := newEnv(t, envOptions{dockerHost: host})
	id, oldCID := e.staleInstance("shop")
	answer := e.cleanupAsync(id)
	<-engineActed // the old container is gone; its answer is held
	replacement := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: true})
	e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, replacement)
	close(proceed)

	if r := <-answer; r.status != http.StatusOK {
		t.Fatalf("cleanup: %d %s %q, want 200 removed", r.status, r.Code, r.Error)
	}
	var container, status string
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT container_id, status FROM instances WHERE id = $1", id).Scan(&container, &status); err != nil {
		t.Fatalf("the instance row of the new container was deleted: %v", err)
	}
	if container != replacement || status != stale.StatusStopped || e.containerExists(oldCID) || !e.containerExists(replacement) {
		t.Fatalf("row container %s status %s; old container exists %v; want the new container's row, status given back, old one gone",
			stale.ShortID(container), status, e.containerExists(oldCID))
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE 'removed % its row is kept'", id); n != 1 {
		t.Fatalf("%d removal events saying the row was kept, want 1", n)
	}
}

// Item 8: a row names an old exited container while a running container
// carries the same instance label. The old one and the row went, leaving the
// running one without a row; two labelled is a skip, counted.
func TestSharedInstanceLabelIsNeverRemoved(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	id, oldCID := e.staleInstance("shop")
	running := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: true})

	r := e.scanner.Rescan(context.Background())
	for _, o := range r.Snapshot.Observations {
		if o.Instance.ID == id && (o.Verdict.Stale || o.Verdict.Reason != stale.ReasonSharedLabel) {
			t.Fatalf("scan: %+v, want not stale: shared label", o.Verdict)
		}
	}
	res := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if res.status != http.StatusConflict || res.Code != string(cleanup.CodeSharedLabel) || !strings.Contains(res.Error, stale.ShortID(running)) {
		t.Fatalf("cleanup: %d %s %q, want 409 shared_label naming the other container", res.status, res.Code, res.Error)
	}
	res = e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, oldCID, true, time.Now())))
	if res.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", res.status, res.Error)
	}
	if result, reason := e.waitJobs(id); result != store.ResultSkipped || !strings.Contains(reason, "another container carries") {
		t.Fatalf("webhook job: %s %q", result, reason)
	}
	if !e.containerExists(oldCID) || !e.containerRunning(running) || !e.instanceExists(id) || e.engine.removes.Load() != 0 {
		t.Fatal("a container or the row of a shared instance label was removed")
	}
	if v := counterValue(t, e, "stale_exporter_cleanup_shared_labels_total", nil); v < 2 {
		t.Errorf("stale_exporter_cleanup_shared_labels_total = %v, want at least 2", v)
	}
	if v := counterValue(t, e, "stale_exporter_cleanup_refusals_total", map[string]string{"code": string(cleanup.CodeSharedLabel)}); v < 2 {
		t.Errorf("refusals{code=shared_label} = %v, want at least 2", v)
	}
}
