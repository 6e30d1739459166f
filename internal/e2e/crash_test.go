package e2e_test

import (
	"net/http"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// removeBlockingDocker holds every container removal until the caller goes
// away, so a test can kill a process while it is between marking an
// instance removing and removing its container.
func removeBlockingDocker(t *testing.T) string {
	removal := regexp.MustCompile(`^(/v[0-9.]+)?/containers/[^/]+$`)
	return testenv.DockerProxy(t, func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodDelete || !removal.MatchString(r.URL.Path) {
			return false
		}
		<-r.Context().Done()
		return true
	})
}

// TestKilledMidCleanupIsResumed kills a stale-exporter process (SIGKILL)
// after it marked an instance removing and before the container was
// removed, then starts another: once the dead process's lease runs out, the
// new one finishes the job, and nothing stays removing.
func TestKilledMidCleanupIsResumed(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	for range 2 {
		id := db.AddInstance(t, storetest.Instance{CreatedAt: old})
		cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: true})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
	}
	id := db.AddInstance(t, storetest.Instance{CreatedAt: old})
	cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)

	tokensFile, secrets := testenv.Tokens(t, dir, auth.RoleOperator)
	secret := secrets[auth.RoleOperator]
	binary := testenv.BuildExporter(t)
	env := append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN)
	// A 2s Docker timeout gives a 2s window to kill it mid-removal, and an
	// 18s lease (4 x timeout + 10s) before another process may resume.
	args := []string{"--api.tokens-file=" + tokensFile, "--stale.threshold=" + threshold.String(), "--docker.timeout=2s"}

	first := testenv.FreeAddr(t)
	doomed := testenv.Start(t, env, binary, append(args, "--web.listen-address="+first, "--docker.host="+removeBlockingDocker(t))...)
	testenv.WaitHTTP(t, "http://"+first+"/-/ready", 20*time.Second)
	time.Sleep(threshold) // the container ages past the threshold
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+first+"/api/containers/stale/"+id+"/cleanup", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	eventually(t, "the instance marked removing", 10*time.Second, func() bool {
		return db.Count(t, "SELECT count(*) FROM instances WHERE id = $1 AND status = 'removing'", id) == 1
	})
	if err := doomed.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	doomed.Stop()
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND state = 'running'", id); n != 1 {
		t.Fatalf("after the kill: %d running jobs, want the interrupted one", n)
	}
	if !exists(t, docker, cid) {
		t.Fatal("the container was removed before the kill; the test proves nothing")
	}

	second := testenv.FreeAddr(t)
	testenv.Start(t, env, binary, append(args, "--web.listen-address="+second)...)
	eventually(t, "the interrupted job finished by the new process", 45*time.Second, func() bool {
		return db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND state = 'done' AND result = 'removed' AND attempts = 2", id) == 1
	})
	if exists(t, docker, cid) || db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", id) != 0 {
		t.Fatal("the resumed job did not remove the container and its row")
	}
	if n := db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND message LIKE 'removed %'", id); n != 1 {
		t.Fatalf("removal events = %d, want 1", n)
	}
	if n := db.Count(t, "SELECT count(*) FROM instances WHERE status = 'removing'"); n != 0 {
		t.Fatalf("%d instances left removing", n)
	}
}
