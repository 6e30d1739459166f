package cleanup_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/julienschmidt/httprouter"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

const threshold = time.Hour

// clock runs ahead of the real one, so that a container a test just created
// is older than the threshold by it (a container's creation counts as a sign
// of life) without waiting.
var clock = testenv.Ahead(2 * threshold)

// countingEngine is the Docker adapter as the service sees it, counting the
// removals it makes.
type countingEngine struct {
	cleanup.Docker
	removes atomic.Int64
}

func (d *countingEngine) Remove(ctx context.Context, id string, volumes bool) error {
	err := d.Docker.Remove(ctx, id, volumes)
	if err == nil {
		d.removes.Add(1)
	}
	return err
}

type envOptions struct {
	noTokens  bool
	dryRun    bool
	noWorkers bool
	lease     time.Duration
	cacheTTL  time.Duration
	// maxStaleRatio defaults to 0.5.
	maxStaleRatio float64
	db            *storetest.DB
	// storeThreshold reads the threshold from settings instead of the 1h override.
	storeThreshold bool
	// now replaces the clock that runs ahead.
	now func() time.Time
	// dockerHost puts the service's Docker calls through another address.
	dockerHost string
	// wrapStore wraps the service's store, to inject faults.
	wrapStore    func(cleanup.Store) cleanup.Store
	storeTimeout time.Duration
	// wait is how long a cleanup request waits for its job (default 20s).
	wait time.Duration
	// grace before automatic cleanups; keepVolumes keeps anonymous volumes.
	grace       time.Duration
	keepVolumes bool
}

// env is one stale-exporter's cleanup side over a real database and engine,
// served on a loopback port.
type env struct {
	t  testing.TB
	db *storetest.DB
	// docker is the engine for the test's own doings; engine is the
	// adapter the service removes with.
	docker  *client.Client
	engine  *countingEngine
	scanner *scan.Scanner
	svc     *cleanup.Service
	reg     *prometheus.Registry
	url     string
	tokens  map[auth.Role]string
	stop    func()
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	docker := testenv.Docker(t)
	engine := &countingEngine{Docker: dockertest.Local(t)}
	if opts.dockerHost != "" {
		engine.Docker = dockertest.Connect(t, opts.dockerHost)
	}
	if opts.now == nil {
		opts.now = clock
	}
	limit := threshold
	if opts.storeThreshold {
		limit = 0
	}
	db := opts.db
	if db == nil {
		db = storetest.New(t)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	judging := stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: limit, Now: opts.now}
	scanner := scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: judging, CacheTTL: opts.cacheTTL,
		MaxSnapshotAge: time.Minute}, logger)
	var st cleanup.Store = db.Store
	if opts.wrapStore != nil {
		st = opts.wrapStore(st)
	}
	reg := prometheus.NewRegistry()
	if opts.maxStaleRatio == 0 {
		opts.maxStaleRatio = 0.5
	}
	storeTimeout := opts.storeTimeout
	if storeTimeout == 0 {
		storeTimeout = 5 * time.Second
	}
	svc := cleanup.NewService(st, engine, scanner, cleanup.Config{Config: judging, Workers: 4, Lease: opts.lease,
		MaxStaleRatio: opts.maxStaleRatio, DryRun: opts.dryRun, PollInterval: 100 * time.Millisecond,
		Grace: opts.grace, KeepVolumes: opts.keepVolumes,
		StoreTimeout: storeTimeout, RetryBackoff: 100 * time.Millisecond,
	}, reg, logger)

	e := &env{t: t, db: db, docker: docker, engine: engine, scanner: scanner, svc: svc, reg: reg, tokens: map[auth.Role]string{}}
	var tokens *auth.Keyring
	if !opts.noTokens {
		var path string
		path, e.tokens = testenv.Tokens(t, t.TempDir(), auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin, auth.RoleAlertmanager)
		var err error
		if tokens, err = auth.OpenKeyring(path); err != nil {
			t.Fatal(err)
		}
	}
	router := httprouter.New()
	api.New(svc, scanner, db.Store, api.Config{
		Tokens: tokens, Wait: cmp.Or(opts.wait, 20*time.Second), Grace: opts.grace, MaxPerRequest: 250, MaxBodyBytes: 64 << 10, StoreTimeout: storeTimeout,
	}, reg, logger).Register(router)
	router.NotFound = api.NotFound(http.NotFoundHandler())
	srv := httptest.NewServer(router)
	e.url = srv.URL

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.stop = func() {
		cancel()
		wg.Wait()
	}
	if !opts.noWorkers {
		e.startWorkers(ctx, &wg)
	}
	t.Cleanup(func() {
		e.stop()
		srv.Close()
	})
	return e
}

func (e *env) startWorkers(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.svc.Run(ctx)
	}()
}

// staleInstance adds an instance whose created-only container is older than
// the threshold.
func (e *env) staleInstance(project string) (id, containerID string) {
	e.t.Helper()
	id = e.db.AddInstance(e.t, storetest.Instance{Project: project, ImageTag: "pr-1", CreatedAt: time.Now().Add(-2 * threshold)})
	containerID = testenv.NewContainer(e.t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
	e.db.Exec(e.t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, containerID)
	return id, containerID
}

// runningInstance adds an instance whose container runs.
func (e *env) runningInstance(project string) (id, containerID string) {
	e.t.Helper()
	id, containerID = e.staleInstance(project)
	if _, err := e.docker.ContainerStart(context.Background(), containerID, client.ContainerStartOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return id, containerID
}

// runningInstances adds n instances whose containers run, which keeps the
// stale share under the mass-stale guard.
func (e *env) runningInstances(n int) {
	e.t.Helper()
	for range n {
		e.runningInstance("web")
	}
}

// markAsAWorkerWould claims the next job and marks its instance removing,
// pinned to its container as the check judged it (its creation is its
// latest sign of life), as a worker interrupted right after the mark leaves it.
func (e *env) markAsAWorkerWould(lease time.Duration, containerID string) store.Job {
	e.t.Helper()
	ctx := context.Background()
	job, ok, err := e.db.Store.LeaseJob(ctx, lease, testenv.EngineName, stale.UnownedOn)
	if err != nil || !ok {
		e.t.Fatalf("claim: %v %v", ok, err)
	}
	res, err := e.docker.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	created, err := time.Parse(time.RFC3339Nano, res.Container.Created)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.Store.MarkRemoving(ctx, job, stale.StatusStopped, res.Container.ID, created); err != nil {
		e.t.Fatal(err)
	}
	return job
}

func (e *env) containerExists(id string) bool {
	e.t.Helper()
	_, err := e.docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return true
}

func (e *env) containerRunning(id string) bool {
	e.t.Helper()
	res, err := e.docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Container.State.Running
}

func (e *env) instanceExists(id string) bool {
	return e.db.Count(e.t, "SELECT count(*) FROM instances WHERE id = $1", id) == 1
}

func (e *env) instanceStatus(id string) string {
	e.t.Helper()
	var status string
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT status FROM instances WHERE id = $1", id).Scan(&status); err != nil {
		e.t.Fatal(err)
	}
	return status
}

func (e *env) removalEvents(id string) int {
	return e.db.Count(e.t, "SELECT count(*) FROM event_log WHERE source = 'stale' AND instance_id = $1 AND message LIKE 'removed %'", id)
}

// waitJobs waits until every job of the instance is done and returns the
// latest one.
func (e *env) waitJobs(instanceID string) (result store.JobResult, reason string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var state store.JobState
		err := e.db.Pool.QueryRow(context.Background(), `SELECT state, coalesce(result, ''), reason FROM cleanup_jobs
			WHERE instance_id = $1 ORDER BY id DESC LIMIT 1`, instanceID).Scan(&state, &result, &reason)
		if err == nil && state == store.JobDone {
			return result, reason
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("jobs of %s not done in time", instanceID)
	return "", ""
}

// response is the API's envelope, with data left raw.
type response struct {
	status  int
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   string          `json:"error"`
	Code    string          `json:"code"`
}

// do sends a request with the token of role ("" for none) and decodes the
// envelope, failing the test if the answer is not the JSON envelope.
func (e *env) do(method, path string, role auth.Role, contentType string, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r response
	if err := json.Unmarshal(raw, &r); err != nil || res.Header.Get("Content-Type") != "application/json" {
		e.t.Fatalf("%s %s: %d, not a JSON envelope (%s): %s", method, path, res.StatusCode, res.Header.Get("Content-Type"), raw)
	}
	if (res.StatusCode >= 400) != (r.Error != "") || (res.StatusCode >= 400) == r.Success {
		e.t.Fatalf("%s %s: status %d with success=%v error=%q", method, path, res.StatusCode, r.Success, r.Error)
	}
	r.status = res.StatusCode
	return r
}

func (e *env) postJSON(path string, role auth.Role, v any) response {
	e.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(http.MethodPost, path, role, "application/json", body)
}

type jobJSON struct {
	JobID      int64           `json:"job_id"`
	InstanceID string          `json:"instance_id"`
	State      store.JobState  `json:"state"`
	Result     store.JobResult `json:"result"`
	Code       string          `json:"code"`
	Reason     string          `json:"reason"`
	DryRun     bool            `json:"dry_run"`
	Trigger    store.Trigger   `json:"trigger"`
	Requested  string          `json:"requested_by"`
}

func decode[T any](t testing.TB, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

type webhookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// staleAlert is the alert the shipped rule would raise for an instance.
func staleAlert(id, containerID string, cleanupLabel bool, startsAt time.Time) webhookAlert {
	labels := map[string]string{
		"alertname": "StaleContainer", "instance_id": id, "container_id": containerID,
		"project_name": "shop", "stage_name": "preview", "image_tag": "pr-1", "severity": "warning",
	}
	if cleanupLabel {
		labels["action"] = "cleanup"
	}
	return webhookAlert{Status: "firing", Labels: labels, Annotations: map[string]string{}, StartsAt: startsAt, Fingerprint: "fp-" + id}
}

func webhookPayload(alerts ...webhookAlert) map[string]any {
	if alerts == nil {
		alerts = []webhookAlert{} // Alertmanager never sends null
	}
	return map[string]any{
		"version": "4", "receiver": "stale-exporter", "status": "firing", "groupKey": "{}:{}",
		"alerts": alerts, "truncatedAlerts": 0, "externalURL": "http://127.0.0.1:9093",
		"groupLabels": map[string]string{}, "commonLabels": map[string]string{}, "commonAnnotations": map[string]string{},
	}
}
