package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
)

// faultThreshold is the exporters' stale threshold: long enough that the young
// instances (their platform marks them alive every 300ms) stay young through
// a database outage, short enough that the test's containers age past it.
const faultThreshold = 8 * time.Second

// The kinds of instance the suite creates. Only stale ones may be removed.
const (
	kindStale    = "stale"    // created-only container, row old
	kindNamed    = "named"    // stale, and the row holds the container's name, not its id
	kindRunning  = "running"  // container runs
	kindKept     = "kept"     // stopped, labelled docker-watcher.keep=TRUE
	kindYoung    = "young"    // stopped, but the platform saw it alive just now
	kindReplaced = "replaced" // requests name its old container; the row holds a new one
	kindShared   = "shared"   // stale row, and a running container carries the same label
	// kindRedeploy: alive to the platform, which replaces its container
	// under the same name over and over while the faults go on; the row
	// holds the name.
	kindRedeploy = "redeploy"
	kindHeld     = "held"      // stale, and kept forever by a person through the API
	kindNever    = "never"     // stopped, labelled docker-watcher.stale-after=NEVER
	kindBadLabel = "bad-label" // stopped, with a stale-after label that does not parse
	// kindLifted: kept by a person until the third fault, whose keep is
	// then lifted: protected before, removable after.
	kindLifted = "lifted"
)

// liftPhase is the fault before whose load the kindLifted keeps are lifted.
const liftPhase = 3

// platformTables are the platform's tables as a platform with text ids that
// are not UUIDs keeps them (the suite's ids are "chaos-..."), with an
// event_log keeping those ids as text.
const platformTables = `
CREATE TABLE projects (id text PRIMARY KEY DEFAULT 'p-' || md5(random()::text), name text NOT NULL UNIQUE);
CREATE TABLE stages (id text PRIMARY KEY DEFAULT 's-' || md5(random()::text), project_id text NOT NULL, name text NOT NULL,
    UNIQUE (project_id, name));
CREATE TABLE instances (
    id text PRIMARY KEY, stage_id text NOT NULL, project_id text NOT NULL, container_id text, image_tag text,
    status text NOT NULL DEFAULT 'stopped', last_alive_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE event_log (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), severity text NOT NULL,
    source text NOT NULL, message text NOT NULL, project_id text, instance_id text, details jsonb);
`

type instance struct {
	id, kind, containerID string
	// oldContainerID is the replaced container requests name.
	oldContainerID string
	// name is the container's name, for the kinds whose row holds it.
	name string
	// otherContainerID is the running container that carries the same
	// label, for kindShared.
	otherContainerID string
}

// requestContainer is the container a cleanup request names.
func (in instance) requestContainer() string {
	switch {
	case in.oldContainerID != "":
		return in.oldContainerID
	case in.name != "":
		return in.name
	}
	return in.containerID
}

// Docker front modes.
const (
	frontPass int32 = iota
	frontCutAll
	frontDropDeleteAnswers
)

type suite struct {
	t         *testing.T
	docker    *client.Client
	pool      *pgxpool.Pool
	instances []instance
	// batches are the stale instances each fault's load targets.
	batches   [][]instance
	protected []instance
	binary    string
	env       []string
	args      []string
	addrs     []string
	procs     []*testenv.Process
	admin     string
	notifier  string
	mu        sync.Mutex
	statuses  map[string]map[int]int // request kind -> status -> count
	phase     atomic.Int64
	lifted    atomic.Bool
}

func TestFaultsKeepRecordsTrue(t *testing.T) {
	docker := testenv.Docker(t)
	pg := startCluster(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect to the suite's cluster: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE platform"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	dsn := pg.DSN("platform")
	if conn, err = pgx.Connect(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, platformTables); err != nil {
		t.Fatalf("create the platform's tables: %v", err)
	}
	conn.Close(ctx)
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	var mode atomic.Int32
	var dropped atomic.Int64
	front := testenv.DockerProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		switch mode.Load() {
		case frontCutAll:
		case frontDropDeleteAnswers:
			if r.Method != http.MethodDelete {
				return false
			}
			testenv.EngineActs(r)
			dropped.Add(1)
		default:
			return false
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return true
	})

	s := &suite{t: t, docker: docker, pool: pool, statuses: map[string]map[int]int{}}
	s.createInstances(staleBatches, staleBatchSize)
	dir := t.TempDir()
	tokensFile, tokens := testenv.Tokens(t, dir, auth.RoleAdmin, auth.RoleAlertmanager)
	s.admin, s.notifier = tokens[auth.RoleAdmin], tokens[auth.RoleAlertmanager]
	s.binary = testenv.BuildExporter(t)
	s.env = append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+dsn)
	s.args = []string{"--api.tokens-file=" + tokensFile, "--stale.threshold=" + faultThreshold.String(), "--cleanup.grace=3s",
		"--docker.host=" + front, "--docker.timeout=1s", "--store.timeout=1s", "--cleanup.wait=2s",
		"--web.write-timeout=10s", "--collector.cache-ttl=200ms", "--collector.scan-interval=1s",
		"--cleanup.max-stale-ratio=1", "--collector.max-snapshot-age=1m"}
	for range 2 {
		s.addrs = append(s.addrs, testenv.FreeAddr(t))
		s.procs = append(s.procs, nil)
	}
	for i := range s.addrs {
		s.startExporter(i)
	}
	for _, in := range append(s.of(kindHeld), s.of(kindLifted)...) {
		if status := s.request(http.MethodPost, s.addrs[0], "/api/containers/stale/"+in.id+"/keep", s.admin,
			`{"until": "forever", "reason": "held through the faults"}`); status != http.StatusOK {
			t.Fatalf("keep %s: %d", in.id, status)
		}
	}
	keepYoungAlive(t, pool, append(s.of(kindYoung), s.of(kindRedeploy)...))
	redeploys := s.redeployLoop()
	time.Sleep(faultThreshold) // the stale containers age past the threshold

	faults := []struct {
		name   string
		inject func()
	}{
		{"PostgreSQL crashed and restarted", func() { pg.crash(); time.Sleep(2 * time.Second); pg.start() }},
		{"PostgreSQL frozen (SIGSTOP) for 3s", func() { pg.freeze(); time.Sleep(3 * time.Second); pg.thaw() }},
		{"Docker connections cut for 2s", func() { mode.Store(frontCutAll); time.Sleep(2 * time.Second); mode.Store(frontPass) }},
		{"Docker answers lost after each DELETE for 3s", func() {
			mode.Store(frontDropDeleteAnswers)
			time.Sleep(3 * time.Second)
			mode.Store(frontPass)
		}},
		{"exporter killed (SIGKILL) and restarted", func() {
			if err := s.procs[0].Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			s.procs[0].Stop()
			time.Sleep(time.Second)
			s.startExporter(0)
		}},
	}
	disagreements := 0
	for i, f := range faults {
		s.phase.Store(int64(i + 1))
		if i+1 == liftPhase {
			s.liftKeeps()
		}
		var load sync.WaitGroup
		s.load(&load, append(append([]instance{}, s.batches[i]...), s.protected...))
		time.Sleep(300 * time.Millisecond)
		f.inject()
		load.Wait()
		s.converge(f.name)
		n := s.checkInvariant(f.name, false)
		disagreements += n
		t.Logf("fault %d, %s: survived; %d removed so far; %d disagreements", i+1, f.name, s.removedCount(), n)
	}
	t.Logf("DELETE answers dropped after the engine acted: %d", dropped.Load())
	t.Logf("containers replaced under their name while cleanups ran: %d", redeploys())

	// Faults over: one bulk cleanup removes every stale instance left.
	if status := s.post(s.addrs[0], "/api/containers/stale/cleanup", s.admin, `{"max": 100}`); status != http.StatusOK {
		t.Fatalf("final bulk cleanup: %d", status)
	}
	s.converge("final bulk cleanup")
	disagreements += s.checkInvariant("after the final bulk cleanup", true)
	s.mu.Lock()
	kinds := make([]string, 0, len(s.statuses))
	for k := range s.statuses {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("requests %s by status: %v", k, s.statuses[k])
	}
	s.mu.Unlock()
	rows, err := pool.Query(ctx, "SELECT reason_code, count(*) FROM cleanup_jobs WHERE result = 'skipped' GROUP BY 1 ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	skipped, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var code string
		var n int
		err := r.Scan(&code, &n)
		return fmt.Sprintf("%s=%d", code, n), err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cleanups skipped by code: %s", strings.Join(skipped, " "))
	t.Logf("%d faults injected and survived; %d instances (%d removed, %d of them kept until the keep was lifted; %d protected kept); %d disagreements",
		len(faults), len(s.instances), s.removedCount(), len(s.of(kindLifted)), len(s.protected)-len(s.of(kindLifted)), disagreements)
}

func (s *suite) startExporter(i int) {
	s.t.Helper()
	s.procs[i] = testenv.Start(s.t, s.env, s.binary, append([]string{"--web.listen-address=" + s.addrs[i]}, s.args...)...)
	testenv.WaitHTTP(s.t, "http://"+s.addrs[i]+"/-/ready", 30*time.Second)
}

// Each fault's load targets a batch of its own stale instances, so that
// every fault meets removals in progress.
const staleBatches, staleBatchSize = 5, 6

func (s *suite) createInstances(batches, size int) {
	s.t.Helper()
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	n := 0
	add := func(kind string, labels map[string]string, start bool) instance {
		n++
		id := fmt.Sprintf("chaos-%s-%04d", kind, n)
		_, err := s.pool.Exec(ctx, `
			WITH p AS (INSERT INTO projects (name) VALUES ('chaos') ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id),
			s AS (INSERT INTO stages (project_id, name) SELECT id, 'preview' FROM p
				ON CONFLICT (project_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id, project_id)
			INSERT INTO instances (id, stage_id, project_id, image_tag, status, created_at, last_alive_at)
			SELECT $1, s.id, s.project_id, $2, 'stopped', $3, $3 FROM s`, id, kind, old)
		if err != nil {
			s.t.Fatal(err)
		}
		l := map[string]string{stale.LabelInstanceID: id}
		for k, v := range labels {
			l[k] = v
		}
		in := instance{id: id, kind: kind}
		if kind == kindNamed || kind == kindRedeploy {
			in.name = id
		}
		in.containerID = testenv.NewContainer(s.t, s.docker, testenv.ContainerSpec{Labels: l, Start: start, Name: in.name})
		switch kind {
		case kindReplaced:
			in.oldContainerID = in.containerID
			in.containerID = testenv.NewContainer(s.t, s.docker, testenv.ContainerSpec{Labels: l, Start: true})
		case kindShared:
			in.otherContainerID = testenv.NewContainer(s.t, s.docker, testenv.ContainerSpec{Labels: l, Start: true})
		}
		status := stale.StatusStopped
		if start || kind == kindReplaced {
			status = stale.StatusRunning
		}
		if _, err := s.pool.Exec(ctx, "UPDATE instances SET container_id = $2, status = $3 WHERE id = $1", id, in.requestContainer(), status); err != nil {
			s.t.Fatal(err)
		}
		if kind == kindReplaced {
			if _, err := s.pool.Exec(ctx, "UPDATE instances SET container_id = $2 WHERE id = $1", id, in.containerID); err != nil {
				s.t.Fatal(err)
			}
		}
		return in
	}
	for range batches {
		var batch []instance
		for i := range size {
			kind := kindStale
			if i%3 == 2 {
				kind = kindNamed
			}
			batch = append(batch, add(kind, nil, false))
		}
		s.batches = append(s.batches, batch)
		s.instances = append(s.instances, batch...)
	}
	for range 4 {
		s.protected = append(s.protected, add(kindRunning, nil, true))
	}
	for range 2 {
		s.protected = append(s.protected, add(kindKept, map[string]string{stale.LabelKeep: "TRUE"}, false),
			add(kindYoung, nil, false), add(kindReplaced, nil, false), add(kindShared, nil, false), add(kindRedeploy, nil, false),
			add(kindHeld, nil, false), add(kindNever, map[string]string{stale.LabelStaleAfter: "NEVER"}, false),
			add(kindBadLabel, map[string]string{stale.LabelStaleAfter: "soon"}, false), add(kindLifted, nil, false))
	}
	s.instances = append(s.instances, s.protected...)
}

// redeployLoop plays the platform redeploying the kindRedeploy instances
// while cleanups run: the container removed and made anew under the same
// name, the row left holding the name, until the returned function stops it
// and says how many were replaced. Each instance's containerID is its latest
// container; s.mu is held across a replacement, so that the invariant never
// looks between the removal and the creation.
func (s *suite) redeployLoop() func() int {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	replaced := 0
	replace := func(i int) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		in := s.instances[i]
		if _, err := s.docker.ContainerRemove(ctx, in.containerID, client.ContainerRemoveOptions{Force: true}); err != nil {
			return err
		}
		res, err := s.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Name: in.name,
			Config:     &container.Config{Image: testenv.ImageName, Labels: map[string]string{stale.LabelInstanceID: in.id}},
			HostConfig: &container.HostConfig{NetworkMode: "none"}})
		if err != nil {
			return err
		}
		s.instances[i].containerID = res.ID
		replaced++
		return nil
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for i, in := range s.instances {
				if in.kind == kindRedeploy && ctx.Err() == nil {
					if err := replace(i); err != nil && ctx.Err() == nil {
						s.t.Errorf("redeploy %s: %v", in.id, err)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(700 * time.Millisecond):
			}
		}
	}()
	stop := sync.OnceValue(func() int {
		cancel()
		<-done
		return replaced
	})
	s.t.Cleanup(func() {
		stop()
		for _, in := range s.of(kindRedeploy) {
			_, _ = s.docker.ContainerRemove(context.Background(), in.containerID, client.ContainerRemoveOptions{Force: true})
		}
	})
	return stop
}

func (s *suite) of(kind string) []instance {
	var out []instance
	for _, in := range s.instances {
		if in.kind == kind {
			out = append(out, in)
		}
	}
	return out
}

// keepYoungAlive plays the platform seeing the young instances alive.
func keepYoungAlive(t *testing.T, pool *pgxpool.Pool, young []instance) {
	ids := make([]string, len(young))
	for i, in := range young {
		ids[i] = in.id
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, _ = pool.Exec(qctx, "UPDATE instances SET last_alive_at = now() WHERE id = ANY($1::text[])", ids)
			qcancel()
			time.Sleep(300 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// load asks for the cleanup of every target once per trigger, spread over
// the fault: one REST request (the targets split between the exporters),
// one alert occurrence delivered to both exporters (as two clustered
// Alertmanagers do), and one bulk cleanup per exporter first. Once per
// trigger, so that a job lying about its outcome is not covered up by a
// later request.
func (s *suite) load(wg *sync.WaitGroup, targets []instance) {
	order := rand.Perm(len(targets))
	for i, addr := range s.addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.count("bulk", s.post(addr, "/api/containers/stale/cleanup", s.admin, `{"max": 1}`))
			for j := i; j < len(order); j += len(s.addrs) {
				s.count("rest", s.post(addr, "/api/containers/stale/"+targets[order[j]].id+"/cleanup", s.admin, ""))
				time.Sleep(300 * time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, k := range rand.Perm(len(targets)) {
			body := s.alert(targets[k])
			for _, addr := range s.addrs {
				s.count("webhook", s.post(addr, "/api/alertmanager/webhook", s.notifier, body))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

// alert is the webhook payload of the StaleContainer alert of an instance,
// one occurrence per fault.
func (s *suite) alert(in instance) string {
	body, err := json.Marshal(map[string]any{
		"version": "4", "status": "firing", "receiver": "stale-exporter", "groupKey": "{}:{instance_id=\"" + in.id + "\"}",
		"groupLabels": map[string]string{}, "commonLabels": map[string]string{}, "commonAnnotations": map[string]string{},
		"externalURL": "http://127.0.0.1:9093", "truncatedAlerts": 0,
		"alerts": []map[string]any{{
			"status": "firing", "fingerprint": fmt.Sprintf("%.16s", strings.ReplaceAll(in.id, "-", "")),
			"startsAt": time.Unix(1_800_000_000+s.phase.Load(), 0).UTC(), "endsAt": time.Time{}, "generatorURL": "",
			"annotations": map[string]string{},
			"labels": map[string]string{"alertname": "StaleContainer", "instance_id": in.id, "container_id": in.requestContainer(),
				"project_name": "chaos", "stage_name": "preview", "image_tag": in.kind, "action": "cleanup"},
		}},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return string(body)
}

var httpClient = &http.Client{Timeout: 15 * time.Second}

// liftKeeps lifts the keeps of the kindLifted instances: they are stale
// again at once, their grace counting from now.
func (s *suite) liftKeeps() {
	s.t.Helper()
	for _, in := range s.of(kindLifted) {
		if status := s.request(http.MethodDelete, s.addrs[0], "/api/containers/stale/"+in.id+"/keep", s.admin, ""); status != http.StatusOK {
			s.t.Fatalf("lift the keep of %s: %d", in.id, status)
		}
	}
	s.lifted.Store(true)
}

// post sends a POST and returns its status (0 when the exporter could not
// be reached, as while it is killed).
func (s *suite) post(addr, path, token, body string) int {
	return s.request(http.MethodPost, addr, path, token, body)
}

// request sends a request and returns its status, 0 when the exporter could
// not be reached.
func (s *suite) request(method, addr, path, token, body string) int {
	req, _ := http.NewRequest(method, "http://"+addr+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var env struct {
		Success *bool `json:"success"`
	}
	if json.NewDecoder(res.Body).Decode(&env) != nil || env.Success == nil {
		s.t.Errorf("%s %s: %d without the JSON envelope", method, path, res.StatusCode)
	}
	return res.StatusCode
}

func (s *suite) count(kind string, status int) {
	// Never a 500: no job result maps to one.
	switch status {
	case 0, http.StatusOK, http.StatusAccepted, http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable:
	default:
		s.t.Errorf("%s request answered %d", kind, status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statuses[kind] == nil {
		s.statuses[kind] = map[int]int{}
	}
	s.statuses[kind][status]++
}

// converge waits until no job is in flight and no instance is removing: a
// job interrupted by a fault is resumed once its lease (4 x 1s + 10s) ends.
func (s *suite) converge(after string) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if s.query("SELECT count(*) FROM cleanup_jobs WHERE state <> 'done'")+
			s.query("SELECT count(*) FROM instances WHERE status = 'removing'") == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s: jobs or instances still in flight after 60s", after)
}

func (s *suite) query(sql string, args ...any) int {
	s.t.Helper()
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (s *suite) removedCount() int {
	return s.query("SELECT count(*) FROM cleanup_jobs WHERE result = 'removed'")
}

func (s *suite) exists(id string) bool {
	s.t.Helper()
	_, err := s.docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return true
}

// checkKeep checks a kept instance's keep and its record: held forever, or
// lifted (ended) once liftKeeps ran; one keep event, and one lift event once
// lifted; a removed instance's keep goes with its row.
func (s *suite) checkKeep(after string, in instance, row bool) int {
	s.t.Helper()
	lifted := in.kind == kindLifted && s.lifted.Load()
	keeps := s.query("SELECT count(*) FROM stale_exporter_keeps WHERE instance_id = $1", in.id)
	forever := s.query("SELECT count(*) FROM stale_exporter_keeps WHERE instance_id = $1 AND until IS NULL", in.id)
	keepEvents := s.query("SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE 'instance % kept forever by %'", in.id)
	liftEvents := s.query("SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE 'keep of instance % lifted by %'", in.id)
	wantKeeps, wantForever, wantLifts := 1, 1, 0
	if lifted {
		wantForever, wantLifts = 0, 1
		if !row {
			wantKeeps = 0
		}
	}
	if keeps != wantKeeps || forever != wantForever || keepEvents != 1 || liftEvents != wantLifts {
		s.t.Errorf("%s: %s instance %s: %d keeps (%d forever), %d keep and %d lift events; want %d (%d), 1 and %d",
			after, in.kind, in.id, keeps, forever, keepEvents, liftEvents, wantKeeps, wantForever, wantLifts)
		return 1
	}
	return 0
}

// checkInvariant checks every instance: its container, row, jobs and events
// agree; only stale instances were removed; final asks that all were.
func (s *suite) checkInvariant(after string, final bool) int {
	s.t.Helper()
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		s.t.Errorf(after+": "+format, args...)
	}
	s.mu.Lock() // no redeploy between a removal and its creation
	defer s.mu.Unlock()
	for _, in := range s.instances {
		var status string
		err := s.pool.QueryRow(context.Background(), "SELECT status FROM instances WHERE id = $1", in.id).Scan(&status)
		row := err == nil
		container := s.exists(in.containerID)
		removedJobs := s.query("SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND result = 'removed'", in.id)
		removalEvents := s.query("SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE 'removed %'", in.id)
		removable := in.kind == kindStale || in.kind == kindNamed || (in.kind == kindLifted && s.lifted.Load())
		if in.kind == kindHeld || in.kind == kindLifted {
			bad += s.checkKeep(after, in, row)
		}
		switch {
		case removable && !row:
			if container || removedJobs != 1 || removalEvents != 1 {
				fail("removed stale instance %s: container=%v removed jobs=%d removal events=%d, want false, 1, 1", in.id, container, removedJobs, removalEvents)
			}
		case removable:
			if !container || status != stale.StatusStopped || removedJobs != 0 || removalEvents != 0 {
				fail("stale instance %s not removed: container=%v status=%s removed jobs=%d events=%d", in.id, container, status, removedJobs, removalEvents)
			}
			if final {
				fail("stale instance %s was never removed", in.id)
			}
		default:
			want := stale.StatusStopped
			if in.kind == kindRunning || in.kind == kindReplaced {
				want = stale.StatusRunning
			}
			if !row || !container || status != want || removedJobs != 0 || removalEvents != 0 {
				fail("%s instance %s: row=%v container=%v status=%s removed jobs=%d events=%d: it must never be removed",
					in.kind, in.id, row, container, status, removedJobs, removalEvents)
			}
			if in.oldContainerID != "" && !s.exists(in.oldContainerID) {
				fail("the replaced container of %s was removed", in.id)
			}
			if in.otherContainerID != "" && !s.exists(in.otherContainerID) {
				fail("the running container sharing the label of %s was removed", in.id)
			}
		}
	}
	if n := s.query("SELECT count(*) FROM cleanup_jobs WHERE state <> 'done'"); n != 0 {
		fail("%d jobs still in flight", n)
	}
	if n := s.query("SELECT count(*) FROM cleanup_jobs WHERE result = 'skipped' AND reason_code = 'grace' AND trigger <> 'webhook'"); n != 0 {
		fail("%d cleanups asked by a person refused for the grace", n)
	}
	if w, o := s.query("SELECT count(*) FROM event_log WHERE severity = 'warning' AND message LIKE '%is stale'"),
		s.query("SELECT count(*) FROM alert_occurrences"); w != o {
		fail("%d stale warnings for %d alert occurrences", w, o)
	}
	return bad
}
