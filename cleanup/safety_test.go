package cleanup_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// settings.stale_threshold_days of 365000 ("practically never") wrapped a
// time.Duration negative, and REST and webhook cleanups removed containers
// stopped minutes before. Out of range now fails every cleanup.
func TestThresholdOutOfRangeRemovesNothing(t *testing.T) {
	e := newEnv(t, envOptions{storeThreshold: true, now: time.Now})
	e.runningInstances(3)
	id := e.db.AddInstance(t, storetest.Instance{CreatedAt: time.Now().Add(-time.Hour), LastAliveAt: time.Now().Add(-3 * time.Minute)})
	cid := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: true, Exit: true})
	e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
	e.db.Exec(t, "ALTER TABLE settings DROP CONSTRAINT IF EXISTS settings_stale_threshold_days_check")
	e.db.Exec(t, "UPDATE settings SET stale_threshold_days = 365000")

	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if r.status == http.StatusOK || !strings.Contains(r.Error, "out of range") {
		t.Fatalf("REST cleanup with an out-of-range threshold: %d %q", r.status, r.Error)
	}
	r = e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now())))
	if r.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.status, r.Error)
	}
	if result, reason := e.waitJobs(id); result == store.ResultRemoved || !strings.Contains(reason, "out of range") {
		t.Fatalf("webhook job: %s %q", result, reason)
	}
	if !e.containerExists(cid) || !e.instanceExists(id) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatal("a container stopped 3 minutes ago was removed, or its row changed")
	}
}

// A 30-day-old instance whose platform just created its new container (not
// started yet) is a redeploy in progress: it must not be removed.
func TestRedeployInProgressIsNotRemoved(t *testing.T) {
	e := newEnv(t, envOptions{now: time.Now})
	monthAgo := time.Now().Add(-30 * 24 * time.Hour)
	id := e.db.AddInstance(t, storetest.Instance{CreatedAt: monthAgo, LastAliveAt: monthAgo, Status: "deploying"})
	cid := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
	e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)

	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if r.status != http.StatusConflict || !strings.Contains(r.Error, "not stale") {
		t.Fatalf("cleanup of a redeploy in progress: %d %q, want 409 not stale", r.status, r.Error)
	}
	if !e.containerExists(cid) || e.instanceStatus(id) != "deploying" {
		t.Fatal("the new container or its row was touched")
	}
}

// The engine removes the container but the client never gets the answer
// (connection cut, engine restarting): the job must still say removed.
func TestRemoveAnswerLostAfterEngineActed(t *testing.T) {
	testenv.Docker(t)
	var cut atomic.Int64
	host := testenv.DockerProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodDelete {
			return false
		}
		testenv.EngineActs(r)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		cut.Add(1)
		return true
	})
	e := newEnv(t, envOptions{dockerHost: host})
	id, cid := e.staleInstance("shop")
	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("cleanup whose answer was lost: %d %q, want 200 removed", r.status, r.Error)
	}
	if cut.Load() != 1 || e.containerExists(cid) || e.instanceExists(id) || e.removalEvents(id) != 1 {
		t.Fatalf("cut=%d container=%v row=%v events=%d: container, row and event log disagree",
			cut.Load(), e.containerExists(cid), e.instanceExists(id), e.removalEvents(id))
	}
}

// failingFinish fails the first FinishRemoved, as a PostgreSQL gone right
// after the engine removed the container would.
type failingFinish struct {
	cleanup.Store
	failed atomic.Bool
}

func (f *failingFinish) FinishRemoved(ctx context.Context, job store.Job, event func(bool) store.Event) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("connection refused (injected)")
	}
	return f.Store.FinishRemoved(ctx, job, event)
}

// A job that already removed the container and lost the store before it
// could record it must finish its removal when resumed, even if the
// mass-stale guard would now refuse a new one.
func TestResumedJobFinishesItsRemoval(t *testing.T) {
	e := newEnv(t, envOptions{lease: 2 * time.Second, wrapStore: func(s cleanup.Store) cleanup.Store { return &failingFinish{Store: s} }})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	r := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now())))
	if r.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.status, r.Error)
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.containerExists(cid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if e.containerExists(cid) {
		t.Fatal("the container was never removed")
	}
	// Now most instances look stale: a re-judged job would be refused.
	for range 5 {
		e.staleInstance("other")
	}
	if result, reason := e.waitJobs(id); result != store.ResultRemoved {
		t.Fatalf("resumed job: %s %q, want removed", result, reason)
	}
	if e.instanceExists(id) || e.removalEvents(id) != 1 || e.db.Count(t, "SELECT count(*) FROM instances WHERE status = 'removing'") != 0 {
		t.Fatal("row, event log and job disagree after the resumed removal")
	}
}

func TestPoisonWebhookAlertsAreInvalidNotRetried(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	nulLabel := staleAlert(id, cid, false, time.Now())
	nulLabel.Labels["project_name"] = "sh\x00op"
	nulLabel.Fingerprint = "fp-nul-label"
	nulAnnotation := staleAlert(id, cid, false, time.Now())
	nulAnnotation.Annotations["summary"] = "stale\x00"
	nulAnnotation.Fingerprint = "fp-nul-annotation"
	longFingerprint := staleAlert(id, cid, false, time.Now())
	longFingerprint.Fingerprint = strings.Repeat("f", 8000)
	good := staleAlert(id, cid, false, time.Now())

	payload := webhookPayload(nulLabel, nulAnnotation, longFingerprint, good)
	payload["truncatedAlerts"] = 7
	r := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, payload)
	if r.status != http.StatusOK {
		t.Fatalf("poison delivery: %d %q, want 200 (Alertmanager retries 5xx forever)", r.status, r.Error)
	}
	got := decode[struct {
		Alerts []struct {
			Result string `json:"result"`
			Detail string `json:"detail"`
		} `json:"alerts"`
	}](t, r.Data)
	want := []string{cleanup.AlertInvalid, cleanup.AlertInvalid, cleanup.AlertInvalid, cleanup.AlertRecorded}
	for i, a := range got.Alerts {
		if i >= len(want) || a.Result != want[i] {
			t.Errorf("alert %d: %s (%s), want %v", i, a.Result, a.Detail, want)
		}
	}
	if n := counterValue(t, e, "stale_exporter_webhook_alerts_total", map[string]string{"result": "invalid"}); n != 3 {
		t.Errorf("invalid alerts counted: %v, want 3", n)
	}
	if n := counterValue(t, e, "stale_exporter_webhook_truncated_alerts_total", nil); n != 7 {
		t.Errorf("truncated alerts counted: %v, want 7", n)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE severity = 'warning'"); n != 1 {
		t.Errorf("warnings recorded: %d, want 1 (the valid alert)", n)
	}
}

// hangingStore blocks every call while hung, as a SIGSTOPped PostgreSQL does.
type hangingStore struct {
	cleanup.Store
	hung atomic.Bool
}

func (h *hangingStore) wait(ctx context.Context) error {
	if !h.hung.Load() {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (h *hangingStore) Instance(ctx context.Context, id string) (stale.Instance, error) {
	if err := h.wait(ctx); err != nil {
		return stale.Instance{}, err
	}
	return h.Store.Instance(ctx, id)
}

func (h *hangingStore) RecentJobs(ctx context.Context, limit int) ([]store.Job, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.Store.RecentJobs(ctx, limit)
}

func (h *hangingStore) RecordAlert(ctx context.Context, occ store.AlertOccurrence, event store.Event, req *store.JobRequest) (bool, store.Job, error) {
	if err := h.wait(ctx); err != nil {
		return false, store.Job{}, err
	}
	return h.Store.RecordAlert(ctx, occ, event, req)
}

// Every handler that touches the store has a deadline and answers 503 when
// the store hangs.
func TestHangingStoreAnswers503(t *testing.T) {
	var hanging *hangingStore
	e := newEnv(t, envOptions{storeTimeout: 300 * time.Millisecond, noWorkers: true, wrapStore: func(s cleanup.Store) cleanup.Store {
		hanging = &hangingStore{Store: s}
		return hanging
	}})
	id, cid := e.staleInstance("shop")
	hanging.hung.Store(true)
	for _, c := range []struct {
		name, method, path string
		role               auth.Role
		body               string
	}{
		{"cleanup one", http.MethodPost, "/api/containers/stale/" + id + "/cleanup", auth.RoleOperator, ""},
		{"webhook", http.MethodPost, "/api/alertmanager/webhook", auth.RoleAlertmanager, mustJSON(t, webhookPayload(staleAlert(id, cid, true, time.Now())))},
		{"list cleanups", http.MethodGet, "/api/cleanups", auth.RoleViewer, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			ct := ""
			if c.body != "" {
				ct = "application/json"
			}
			r := e.do(c.method, c.path, c.role, ct, []byte(c.body))
			// It says what did not answer: the store, within its timeout.
			if r.status != http.StatusServiceUnavailable || !(strings.Contains(r.Error, "store unavailable") ||
				r.Code == "timeout" && strings.Contains(r.Error, "no answer within --store.timeout (300ms")) {
				t.Fatalf("%d %s %q, want 503 naming the store and its timeout", r.status, r.Code, r.Error)
			}
			t.Logf("answered in %s", time.Since(start).Round(time.Millisecond))
		})
	}
	hanging.hung.Store(false)
	if !e.containerExists(cid) || e.db.Count(t, "SELECT count(*) FROM cleanup_jobs") != 0 {
		t.Fatal("a request that answered 503 left a job or removed the container")
	}
}

// Item 9: a row without a container was reported stale and would_remove,
// but every real cleanup was skipped as "changed" (comparing ” with NULL),
// forever. It is its own state now: never stale, refused with that reason.
func TestInstanceWithoutAContainer(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	id := e.db.AddInstance(t, storetest.Instance{CreatedAt: time.Now().Add(-30 * 24 * time.Hour)})
	e.db.Exec(t, "UPDATE instances SET container_id = NULL WHERE id = $1", id)
	r := e.scanner.Rescan(context.Background())
	if r.Snapshot.StaleCount() != 0 {
		t.Fatalf("a row without a container counted stale")
	}
	for _, path := range []string{"?dry_run=true", ""} {
		res := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup"+path, auth.RoleOperator, "", nil)
		if res.status != http.StatusConflict || res.Code != string(cleanup.CodeNoContainer) {
			t.Fatalf("cleanup%s: %d %s %q, want 409 no_container", path, res.status, res.Code, res.Error)
		}
	}
	if !e.instanceExists(id) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatal("the row without a container was changed")
	}
}

// Item 10: only "true" counted as keep, so docker-watcher.keep=TRUE gave no
// protection. Any boolean spelling keeps; a value that is not a boolean
// keeps too, and says why.
func TestKeepLabelIsABoolean(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.runningInstances(6)
	for value, code := range map[string]cleanup.Code{"TRUE": cleanup.CodeKept, "True": cleanup.CodeKept, "1": cleanup.CodeKept,
		"yes": cleanup.CodeKept, "": cleanup.CodeKept} {
		id, cid := e.instanceWith(testenv.ContainerSpec{})
		// The label set at creation: replace the container with a kept one.
		e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, testenv.NewContainer(t, e.docker,
			testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id, stale.LabelKeep: value}}))
		if _, err := e.docker.ContainerRemove(context.Background(), cid, client.ContainerRemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		res := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
		if res.status != http.StatusConflict || res.Code != string(code) {
			t.Errorf("keep=%q: %d %s %q, want 409 %s", value, res.status, res.Code, res.Error, code)
		}
	}
	if e.engine.removes.Load() != 0 {
		t.Fatalf("%d kept containers removed", e.engine.removes.Load())
	}
}

// Item 11: a numeric threshold of 1.4 was rounded to 1 day and a 30-hour-old
// instance removed; two settings rows let a no-op UPDATE choose the
// threshold. Anything but one integer fails every cleanup, naming it.
func TestUnusableSettingsRemoveNothing(t *testing.T) {
	for _, c := range []struct{ name, setup, has string }{
		{"1.4 days", "ALTER TABLE settings ALTER COLUMN stale_threshold_days TYPE numeric; UPDATE settings SET stale_threshold_days = 1.4", `"1.4"`},
		{"two rows", "ALTER TABLE settings DROP CONSTRAINT settings_pkey, DROP CONSTRAINT settings_id_check; INSERT INTO settings VALUES (false, 1)", "more than one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{storeThreshold: true, now: time.Now})
			e.runningInstances(3)
			id := e.db.AddInstance(t, storetest.Instance{CreatedAt: time.Now().Add(-30 * time.Hour), LastAliveAt: time.Now().Add(-30 * time.Hour)})
			cid := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
			e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
			e.db.Exec(t, "UPDATE settings SET stale_threshold_days = 2")
			e.db.Exec(t, c.setup)
			res := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
			if res.status != http.StatusServiceUnavailable || res.Code != string(cleanup.CodeMisconfigured) || !strings.Contains(res.Error, c.has) {
				t.Fatalf("cleanup: %d %s %q, want 503 misconfigured naming %s", res.status, res.Code, res.Error, c.has)
			}
			if !e.containerExists(cid) || !e.instanceExists(id) {
				t.Fatal("removed with an unusable threshold")
			}
		})
	}
}

// Item 14: with the owning engine unreachable a cleanup answered 500 with
// its job failed. The job is tried again with a backoff (202 meanwhile, the
// last reason kept) and removes once the engine answers; one whose engine
// never answers fails after its tries, answered 503 with the reason. No
// job result is a 500.
func TestUnreachableEngineIsRetriedNot500(t *testing.T) {
	testenv.Docker(t)
	var down atomic.Bool
	host := testenv.DockerProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !down.Load() {
			return false
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return true
	})
	e := newEnv(t, envOptions{dockerHost: host, wait: time.Second})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	down.Store(true)
	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	job := decode[jobJSON](t, r.Data)
	if r.status != http.StatusAccepted || job.State != store.JobPending || !strings.Contains(job.Reason, "retrying") {
		t.Fatalf("engine down: %d %+v %q, want 202 with a pending job saying it retries", r.status, job, r.Error)
	}
	down.Store(false)
	if result, reason := e.waitJobs(id); result != store.ResultRemoved || e.containerExists(cid) {
		t.Fatalf("once the engine answers: %s %q", result, reason)
	}

	down.Store(true)
	id, cid = e.staleInstance("shop")
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			break
		}
	}
	if r.status != http.StatusServiceUnavailable || r.Code != string(cleanup.CodeUnavailable) || !strings.Contains(r.Error, "inspect container") {
		t.Fatalf("engine never back: %d %s %q, want 503 unavailable with the last reason", r.status, r.Code, r.Error)
	}
	down.Store(false)
	if !e.containerExists(cid) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatal("a failed job changed the container or the row")
	}
}

// Item 18: a job for an engine whose exporter never comes back stayed
// pending, answered 202, forever; records were never deleted. Expiry closes
// it with its reason; retention deletes what is older than it.
func TestJobsExpireAndRecordsArePruned(t *testing.T) {
	e := newEnv(t, envOptions{wait: 500 * time.Millisecond})
	e.runningInstances(1)
	id, cid := e.staleInstance("shop")
	e.db.Exec(t, "UPDATE instances SET docker_host = 'gone-host' WHERE id = $1", id)
	job, err := e.svc.Request(context.Background(), id, store.TriggerSingle, "test", false)
	if err != nil || job.State != store.JobPending {
		t.Fatalf("request: %+v %v", job, err)
	}
	e.db.Exec(t, "UPDATE cleanup_jobs SET created_at = now() - interval '2 days' WHERE id = $1", job.ID)
	svc := cleanup.NewService(e.db.Store, e.engine, e.scanner, cleanup.Config{Config: stale.Config{Host: testenv.EngineName}, Workers: 1,
		JobExpiry: 24 * time.Hour, Retention: 30 * 24 * time.Hour}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	svc.Maintain(context.Background())
	r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("a new request after the expiry: %d %q (it makes a new job, pending for its host)", r.status, r.Error)
	}
	var result, code, reason string
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT result, reason_code, reason FROM cleanup_jobs WHERE id = $1", job.ID).Scan(&result, &code, &reason); err != nil {
		t.Fatal(err)
	}
	if result != string(store.ResultSkipped) || code != string(cleanup.CodeExpired) || !strings.Contains(reason, `gone-host`) {
		t.Fatalf("expired job: %s %s %q", result, code, reason)
	}
	if !e.containerExists(cid) || e.instanceStatus(id) != stale.StatusStopped {
		t.Fatal("expiry touched the container or the row")
	}
	// Retention: records older than it go, newer ones stay.
	e.db.Exec(t, "UPDATE cleanup_jobs SET finished_at = now() - interval '40 days' WHERE id = $1", job.ID)
	e.db.Exec(t, `INSERT INTO alert_occurrences (fingerprint, starts_at, last_seen_at) VALUES ('old', now(), now() - interval '40 days'),
		('recent', now(), now())`)
	svc.Maintain(context.Background())
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE id = $1", job.ID); n != 0 {
		t.Error("a job finished 40 days ago was kept past a 30-day retention")
	}
	if n := e.db.Count(t, "SELECT count(*) FROM alert_occurrences"); n != 1 {
		t.Errorf("%d alert occurrences, want the recent one only", n)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND state <> 'done'", id); n != 1 {
		t.Error("retention deleted a job in flight")
	}
}
