package e2e_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// instanceSample is the value of a per-instance metric of instance id in
// one scrape (ok false when it has none).
func instanceSample(t *testing.T, base, metric, id string) (float64, bool) {
	t.Helper()
	return sampleOf(t, base+"/metrics", metric, `instance_id="`+id+`"`)
}

// With the events path (the default), a die is in the metrics within a
// second of the engine's end time, exact to the second, also for a
// container removed right after it died, before any scan; a row the
// platform adds or points elsewhere is in them within a second too. The
// background scan runs only every minute here: what is seen, events and
// announcements brought.
func TestEventsReachTheMetrics(t *testing.T) {
	binary := testenv.BuildExporter(t)
	docker := testenv.Docker(t)
	db := storetest.New(t)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	dies := db.AddInstance(t, storetest.Instance{CreatedAt: old, Status: stale.StatusRunning})
	removed := db.AddInstance(t, storetest.Instance{CreatedAt: old, Status: stale.StatusRunning})
	ids := map[string]string{}
	for _, id := range []string{dies, removed} {
		ids[id] = testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: true})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, ids[id])
	}
	addr := testenv.FreeAddr(t)
	testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), binary, "--web.listen-address="+addr,
		"--collector.scan-interval=1m", "--collector.cache-ttl=1m")
	base := "http://" + addr
	testenv.WaitHTTP(t, base+"/-/ready", 30*time.Second)
	eventually(t, "both instances alive in the metrics", 10*time.Second, func() bool {
		a, okA := instanceSample(t, base, "instance_last_alive_seconds", dies)
		b, okB := instanceSample(t, base, "instance_last_alive_seconds", removed)
		return okA && okB && time.Since(time.Unix(int64(a), 0)) < 5*time.Second && time.Since(time.Unix(int64(b), 0)) < 5*time.Second
	})

	for name, id := range map[string]string{"a die": dies, "a die and a removal": removed} {
		if _, err := docker.ContainerKill(ctx, ids[id], client.ContainerKillOptions{}); err != nil {
			t.Fatal(err)
		}
		res, err := testenv.WaitExited(ctx, docker, ids[id])
		if err != nil {
			t.Fatal(err)
		}
		end, err := time.Parse(time.RFC3339Nano, res.State.FinishedAt)
		if err != nil {
			t.Fatal(err)
		}
		if id == removed {
			if _, err := docker.ContainerRemove(ctx, ids[id], client.ContainerRemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		var got float64
		for time.Since(start) < 5*time.Second {
			if v, ok := instanceSample(t, base, "instance_last_alive_seconds", id); ok && int64(v) == end.Unix() {
				got = v
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(end)
		t.Logf("%s: in instance_last_alive_seconds %s after the engine's end time", name, took.Round(time.Millisecond))
		if got == 0 || took > time.Second+500*time.Millisecond {
			v, _ := instanceSample(t, base, "instance_last_alive_seconds", id)
			t.Errorf("%s: last alive %v after %s, want the end %d within a second", name, v, took, end.Unix())
		}
	}

	// The platform adds a row: it is judged within a second.
	added := db.AddInstance(t, storetest.Instance{CreatedAt: old})
	start := time.Now()
	eventually(t, "the added row in the metrics", 5*time.Second, func() bool {
		_, ok := instanceSample(t, base, "instance_stale", added)
		return ok
	})
	t.Logf("a row the platform added: in the metrics after %s", time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("the added row took %s", took)
	}
}
