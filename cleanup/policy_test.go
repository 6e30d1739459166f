package cleanup_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// movable is a clock running ahead of the real one by an offset the test
// moves (starting 2h ahead, as the env's clock).
type movable struct{ ahead atomic.Int64 }

func newMovable() *movable {
	m := &movable{}
	m.ahead.Store(int64(2 * threshold))
	return m
}

func (m *movable) now() time.Time        { return time.Now().Add(time.Duration(m.ahead.Load())) }
func (m *movable) move(by time.Duration) { m.ahead.Add(int64(by)) }

// list reads GET /api/containers/stale by instance.
func (e *env) list() map[string]api.StaleContainer {
	e.t.Helper()
	r := e.do(http.MethodGet, "/api/containers/stale", auth.RoleViewer, "", nil)
	var rows []api.StaleContainer
	if err := json.Unmarshal(r.Data, &rows); err != nil {
		e.t.Fatalf("list: %s", r.Data)
	}
	out := map[string]api.StaleContainer{}
	for _, row := range rows {
		out[row.InstanceID] = row
	}
	return out
}

// A webhook cleanup before the grace is refused, naming when it becomes
// eligible, and the container stays; after it, removed. A person's cleanup
// does not wait.
func TestGraceOnRealParts(t *testing.T) {
	clock := newMovable()
	e := newEnv(t, envOptions{grace: 2 * threshold, now: clock.now, cacheTTL: time.Nanosecond})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop") // stale for 1h by the clock
	r := e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now())))
	if r.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.status, r.Error)
	}
	result, reason := e.waitJobs(id)
	if result != store.ResultSkipped || !strings.Contains(reason, "eligible at") || !e.containerExists(cid) {
		t.Fatalf("within the grace: %s %q, container exists %v", result, reason, e.containerExists(cid))
	}
	if row := e.list()[id]; row.AutomaticCleanupFrom == "" || !strings.Contains(reason, row.AutomaticCleanupFrom) {
		t.Fatalf("the list's earliest automatic cleanup %q is not the refusal's %q", row.AutomaticCleanupFrom, reason)
	}
	// A person during the grace.
	personID, personCID := e.staleInstance("shop")
	if r := e.do(http.MethodPost, "/api/containers/stale/"+personID+"/cleanup", auth.RoleOperator, "", nil); r.status != http.StatusOK || e.containerExists(personCID) {
		t.Fatalf("a person's cleanup during the grace: %d %q", r.status, r.Error)
	}
	clock.move(90 * time.Minute) // now stale for 2h30m
	r = e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now().Add(time.Minute))))
	if r.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.status, r.Error)
	}
	if result, reason := e.waitJobs(id); result != store.ResultRemoved || e.containerExists(cid) {
		t.Fatalf("after the grace: %s %q", result, reason)
	}
	if v := counterValue(t, e, "stale_exporter_cleanup_refusals_total", map[string]string{"code": string(cleanup.CodeGrace)}); v != 1 {
		t.Errorf("refusals{code=grace} = %v, want 1", v)
	}
}

// A kept instance is not stale, refused by webhook and bulk, listed as
// kept; when the keep ends it is stale again at once, since the keep's end.
func TestKeepOnRealParts(t *testing.T) {
	clock := newMovable()
	e := newEnv(t, envOptions{now: clock.now, cacheTTL: time.Nanosecond})
	e.runningInstances(3)
	id, cid := e.staleInstance("shop")
	until := time.Now().Add(3 * threshold).UTC().Truncate(time.Second)
	r := e.postJSON("/api/containers/stale/"+id+"/keep", auth.RoleOperator, map[string]string{"until": until.Format(time.RFC3339), "reason": "demo on Friday"})
	if r.status != http.StatusOK {
		t.Fatalf("keep: %d %q", r.status, r.Error)
	}
	if row := e.list()[id]; row.Stale || row.KeptUntil != until.Format(time.RFC3339) || row.KeptBy != "test-operator" || row.KeepReason != "demo on Friday" {
		t.Fatalf("kept row: %+v", row)
	}
	e.postJSON("/api/alertmanager/webhook", auth.RoleAlertmanager, webhookPayload(staleAlert(id, cid, true, time.Now())))
	if result, reason := e.waitJobs(id); result != store.ResultSkipped || !strings.Contains(reason, "demo on Friday") {
		t.Fatalf("webhook of a kept instance: %s %q", result, reason)
	}
	if r := e.postJSON("/api/containers/stale/cleanup", auth.RoleAdmin, map[string]any{}); r.status != http.StatusOK || !strings.Contains(string(r.Data), `"stale":0`) {
		t.Fatalf("bulk: %d %s", r.status, r.Data)
	}
	if r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleAdmin, "", nil); r.status != http.StatusConflict || r.Code != string(cleanup.CodeKept) {
		t.Fatalf("a person's cleanup of a kept instance: %d %s %q", r.status, r.Code, r.Error)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE 'instance % kept until %by test-operator: demo on Friday'", id); n != 1 {
		t.Fatalf("%d keep events, want 1", n)
	}
	// The keep ends (by the clock): stale again at once, since its end.
	clock.move(2 * threshold)
	row := e.list()[id]
	if !row.Stale || row.StaleSince != until.Format(time.RFC3339) {
		t.Fatalf("after the keep ended: %+v, want stale since %s", row, until.Format(time.RFC3339))
	}
	// Forever, then lifted.
	if r := e.postJSON("/api/containers/stale/"+id+"/keep", auth.RoleAdmin, map[string]string{"until": "forever", "reason": "for good"}); r.status != http.StatusOK {
		t.Fatalf("keep forever: %d %q", r.status, r.Error)
	}
	if row := e.list()[id]; row.Stale || row.KeptUntil != "forever" {
		t.Fatalf("kept forever: %+v", row)
	}
	for _, c := range []struct {
		method, path string
		role         auth.Role
		body         string
		want         int
	}{
		{http.MethodPost, "/api/containers/stale/" + id + "/keep", auth.RoleViewer, `{"until":"forever","reason":"x"}`, http.StatusForbidden},
		{http.MethodPost, "/api/containers/stale/" + id + "/keep", auth.RoleOperator, `{"until":"tomorrow","reason":"x"}`, http.StatusBadRequest},
		{http.MethodPost, "/api/containers/stale/no-such-instance/keep", auth.RoleOperator, `{"until":"forever","reason":"x"}`, http.StatusNotFound},
		{http.MethodDelete, "/api/containers/stale/" + id + "/keep", auth.RoleAlertmanager, ``, http.StatusForbidden},
		{http.MethodDelete, "/api/containers/stale/" + id + "/keep", auth.RoleOperator, ``, http.StatusOK},
		{http.MethodDelete, "/api/containers/stale/" + id + "/keep", auth.RoleOperator, ``, http.StatusNotFound},
	} {
		ct := ""
		if c.body != "" {
			ct = "application/json"
		}
		if r := e.do(c.method, c.path, c.role, ct, []byte(c.body)); r.status != c.want {
			t.Errorf("%s %s as %s: %d %q, want %d", c.method, c.path, c.role, r.status, r.Error, c.want)
		}
	}
	if row := e.list()[id]; !row.Stale || row.KeptUntil != "" {
		t.Fatalf("after lifting: %+v", row)
	}
	if !e.containerExists(cid) || e.engine.removes.Load() != 0 {
		t.Fatal("a kept instance was removed")
	}
}

// The policy a container carries from its deploy: stale-after shortens or
// lengthens its threshold (never: never stale), keep-until keeps it, and a
// label that does not parse keeps it never stale, with the reason listed.
func TestPolicyLabelsOnRealParts(t *testing.T) {
	e := newEnv(t, envOptions{now: time.Now, cacheTTL: time.Nanosecond})
	e.runningInstances(6)
	with := func(labels map[string]string) string {
		id := e.db.AddInstance(t, storetest.Instance{Project: "shop", ImageTag: "pr-1", CreatedAt: time.Now().Add(-2 * threshold)})
		labels[stale.LabelInstanceID] = id
		e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: labels}))
		return id
	}
	short := with(map[string]string{stale.LabelStaleAfter: "2s"})
	plain := with(map[string]string{})
	never := with(map[string]string{stale.LabelStaleAfter: "never", stale.LabelKeepUntil: "2000-01-01T00:00:00Z"})
	odd := with(map[string]string{stale.LabelStaleAfter: "soon"})
	past := with(map[string]string{stale.LabelStaleAfter: "2s", stale.LabelKeepUntil: "2000-01-01T00:00:00Z"})
	future := with(map[string]string{stale.LabelStaleAfter: "2s", stale.LabelKeepUntil: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	time.Sleep(3 * time.Second) // past the 2s stale-after, far within the 1h threshold
	rows := e.list()
	for id, want := range map[string]struct {
		listed, stale bool
		has           string
	}{
		short: {true, true, ""}, plain: {false, false, ""}, never: {false, false, ""}, odd: {true, false, "stale-after"},
		past: {true, true, ""}, future: {true, false, "keep-until label"},
	} {
		row, ok := rows[id]
		if ok != want.listed || row.Stale != want.stale || !strings.Contains(row.Reason+row.KeepReason, want.has) {
			t.Errorf("instance %s: listed %v %+v, want listed %v stale %v with %q", id, ok, row, want.listed, want.stale, want.has)
		}
	}
	r := e.do(http.MethodPost, "/api/containers/stale/"+odd+"/cleanup", auth.RoleOperator, "", nil)
	if r.status != http.StatusConflict || r.Code != string(cleanup.CodePolicy) || !strings.Contains(r.Error, `"soon"`) {
		t.Fatalf("cleanup of an instance whose label does not parse: %d %s %q", r.status, r.Code, r.Error)
	}
	if r := e.do(http.MethodPost, "/api/containers/stale/"+short+"/cleanup", auth.RoleOperator, "", nil); r.status != http.StatusOK {
		t.Fatalf("cleanup of the instance stale after 2s: %d %q", r.status, r.Error)
	}
}

// A removal takes the container's anonymous volume with it, never a named
// one; --cleanup.keep-volumes keeps both. The disk a stale container holds
// is measured, and counted as reclaimed when it goes.
func TestVolumesAndDiskOnRealParts(t *testing.T) {
	for _, keepVolumes := range []bool{false, true} {
		e := newEnv(t, envOptions{keepVolumes: keepVolumes, cacheTTL: time.Nanosecond})
		e.runningInstances(3)
		id := e.db.AddInstance(t, storetest.Instance{Project: "shop", ImageTag: "pr-1", CreatedAt: time.Now().Add(-2 * threshold)})
		named := "stale-exporter-test-named-" + strings.ReplaceAll(id[:8], "-", "")
		cid := testenv.NewContainer(t, e.docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id},
			AnonymousVolume: "/data", NamedVolume: named})
		t.Cleanup(func() {
			_, _ = e.docker.VolumeRemove(context.Background(), named, client.VolumeRemoveOptions{Force: true})
		})
		e.db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
		testenv.WriteFile(t, e.docker, cid, "/", "layer.bin", 1<<20)
		testenv.WriteFile(t, e.docker, cid, "/data", "volume.bin", 1<<20)
		res, err := e.docker.ContainerInspect(context.Background(), cid, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var anonymous string
		for _, m := range res.Container.Mounts {
			if m.Destination == "/data" {
				anonymous = m.Name
			}
		}
		row := e.list()[id]
		if row.ReclaimableBytes == nil || *row.ReclaimableBytes < 2<<20 {
			t.Fatalf("keep volumes %v: reclaimable %v, want at least the 2 MiB written", keepVolumes, row.ReclaimableBytes)
		}
		if r := e.do(http.MethodPost, "/api/containers/stale/"+id+"/cleanup", auth.RoleOperator, "", nil); r.status != http.StatusOK {
			t.Fatalf("cleanup: %d %q", r.status, r.Error)
		}
		volumeExists := func(name string) bool {
			_, err := e.docker.VolumeInspect(context.Background(), name, client.VolumeInspectOptions{})
			return err == nil
		}
		if volumeExists(anonymous) != keepVolumes || !volumeExists(named) {
			t.Fatalf("keep volumes %v: anonymous volume left %v, named volume left %v", keepVolumes, volumeExists(anonymous), volumeExists(named))
		}
		if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE '%anonymous volumes '||$2||'%'", id, anonymous); n != btoi(!keepVolumes) {
			t.Errorf("keep volumes %v: %d removal events naming the anonymous volume", keepVolumes, n)
		}
		if v := counterValue(t, e, "stale_exporter_reclaimed_bytes_total", nil); v < 2<<20 {
			t.Errorf("reclaimed %v bytes, want at least 2 MiB", v)
		}
		if keepVolumes {
			_, _ = e.docker.VolumeRemove(context.Background(), anonymous, client.VolumeRemoveOptions{Force: true})
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
