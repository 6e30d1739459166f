package e2e_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// Item 13 of the second safety round: with default flags and two real
// engines, host B's exporter stopped while B gets a new instance, host A
// judged it stale (its container is not on A's engine) and a cleanup sent to
// A deleted its row while the container stayed on B. By default
// (--docker.claim-unowned=auto) an exporter judges unowned instances only
// while no other engine has registered with the store: A leaves it alone,
// the job waits for its owner, and B removes it once back.
func TestUnownedInstancesAreSafeWithDefaultFlags(t *testing.T) {
	testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()
	engines := map[string]*testenv.Engine{"host-a": testenv.StartEngine(t, "una"), "host-b": testenv.StartEngine(t, "unb")}
	addrs := map[string]string{"host-a": testenv.FreeAddr(t), "host-b": testenv.FreeAddr(t)}
	tokensFile, tokens := testenv.Tokens(t, dir, auth.RoleOperator, auth.RoleAdmin)
	binary := testenv.BuildExporter(t)
	env := append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN)
	exporters := map[string]*testenv.Process{}
	start := func(name string) {
		// Default ownership flags: only the engine's address and name.
		exporters[name] = testenv.Start(t, env, binary, "--web.listen-address="+addrs[name], "--api.tokens-file="+tokensFile,
			"--docker.host="+engines[name].Host, "--docker.host-name="+name, "--stale.threshold="+threshold.String(),
			"--collector.scan-interval=500ms", "--collector.cache-ttl=200ms", "--docker.timeout=2s", "--cleanup.wait=1s")
		testenv.WaitHTTP(t, "http://"+addrs[name]+"/-/ready", 30*time.Second)
	}
	metrics := func(name string) string {
		body, _ := httpGet("http://" + addrs[name] + "/metrics")
		return body
	}
	start("host-a")
	start("host-b")
	eventually(t, "both engines registered, and A no longer judging unowned instances", 20*time.Second, func() bool {
		return db.Count(t, "SELECT count(*) FROM stale_exporter_engines") == 2 &&
			strings.Contains(metrics("host-a"), `stale_exporter_judges_unowned{docker_host="host-a"} 0`)
	})

	exporters["host-b"].Stop()
	old := time.Now().Add(-48 * time.Hour)
	id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: "preview", ImageTag: "new", CreatedAt: old})
	cid := testenv.NewContainer(t, engines["host-b"].Client, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
	time.Sleep(2 * threshold) // the container is old enough to be stale, for its owner

	series := `instance_stale{container_id="` + cid + `",docker_host="",image_tag="new",instance_id="` + id + `",project_name="shop",stage_name="preview"}`
	eventually(t, "A reporting B's new instance unowned, not stale", 10*time.Second, func() bool {
		m := metrics("host-a")
		return strings.Contains(m, series+" 0") && strings.Contains(m, `stale_exporter_unowned_instances{docker_host="host-a"} 1`)
	})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addrs["host-a"]+"/api/containers/stale/"+id+"/cleanup", nil)
	req.Header.Set("Authorization", "Bearer "+tokens[auth.RoleOperator])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	time.Sleep(2 * time.Second)
	if res.StatusCode != http.StatusAccepted || !exists(t, engines["host-b"].Client, cid) ||
		db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", id) != 1 ||
		db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND state = 'pending' AND docker_host IS NULL", id) != 1 {
		t.Fatalf("cleanup asked of A: %d; the container, the row and a pending unowned job must all still be there", res.StatusCode)
	}

	// B returns: it claims its instance by listing the container, and its
	// own exporter carries out the job.
	start("host-b")
	eventually(t, "B's instance removed by B", 30*time.Second, func() bool {
		return !exists(t, engines["host-b"].Client, cid) && db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", id) == 0
	})
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND result = 'removed' AND docker_host = 'host-b'", id); n != 1 {
		t.Fatalf("removals by host-b's jobs: %d, want 1", n)
	}

	// B is retired for good: an admin removes its registration (audited),
	// and A judges unowned instances again.
	exporters["host-b"].Stop()
	req, _ = http.NewRequest(http.MethodDelete, "http://"+addrs["host-a"]+"/api/engines/host-b", nil)
	req.Header.Set("Authorization", "Bearer "+tokens[auth.RoleAdmin])
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("forget host-b: %v %v", res, err)
	}
	res.Body.Close()
	eventually(t, "A judging unowned instances again", 10*time.Second, func() bool {
		return strings.Contains(metrics("host-a"), `stale_exporter_judges_unowned{docker_host="host-a"} 1`)
	})
	if n := db.Count(t, "SELECT count(*) FROM event_log WHERE message = 'registration of Docker engine \"host-b\" removed by test-admin'"); n != 1 {
		t.Fatalf("%d audit events for the removed registration, want 1", n)
	}
}
