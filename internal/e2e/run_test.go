package e2e_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// The README's first command on a machine where PostgreSQL and dockerd are
// stopped: it starts them, creates what it needs, and brings the exporter up
// with both answering; run again, it reuses all of that. (Last in this
// package: it stops the services the tests share, and leaves them running.)
func TestFirstCommandOnAStoppedMachine(t *testing.T) {
	if os.Getenv("STALE_EXPORTER_TEST_DSN") != "" || os.Getenv("DOCKER_HOST") != "" {
		testenv.Unavailable(t, "this machine's own PostgreSQL and dockerd (STALE_EXPORTER_TEST_DSN or DOCKER_HOST points elsewhere)")
	}
	docker := testenv.Docker(t)
	testenv.Binary(t, "pg_ctlcluster")
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil || !strings.Contains(string(readme), "```sh\nmake run ") {
		t.Fatal("the README's first command is no longer `make run`; this test runs it")
	}

	// Stop PostgreSQL and dockerd.
	clusters, err := exec.Command("pg_lsclusters", "-h").Output()
	if err != nil {
		t.Fatal(err)
	}
	cluster := strings.Fields(string(clusters))[:2]
	if out, err := exec.Command("pg_ctlcluster", cluster[0], cluster[1], "stop").CombinedOutput(); err != nil {
		t.Fatalf("stop PostgreSQL: %v %s", err, out)
	}
	raw, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		t.Fatalf("dockerd's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop dockerd: %v", err)
	}
	eventually(t, "dockerd stopped", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := docker.Ping(ctx, client.PingOptions{})
		return err != nil && syscall.Kill(pid, 0) != nil
	})

	home := t.TempDir()
	addr := testenv.FreeAddr(t)
	env := append(os.Environ(), "STALE_EXPORTER_HOME="+home, "STALE_EXPORTER_LISTEN="+addr)
	up := func(run int) string {
		t.Helper()
		started := time.Now()
		p := testenv.StartGroup(t, env, "make", "-C", repo, "run")
		host, _ := os.Hostname()
		eventually(t, "the exporter up with store_up 1 and docker_up 1", 180*time.Second, func() bool {
			body, status := httpGet("http://" + addr + "/metrics")
			return status == 200 && strings.Contains(body, `stale_exporter_store_up{docker_host="`+host+`"} 1`) &&
				strings.Contains(body, `stale_exporter_docker_up{docker_host="`+host+`"} 1`)
		})
		t.Logf("run %d: exporter up with PostgreSQL and Docker %s after the command", run, time.Since(started).Round(time.Second))
		p.Stop()
		return p.Output()
	}
	first := up(1)
	token, err := os.ReadFile(filepath.Join(home, "admin-token"))
	if err != nil || !strings.Contains(first, "Created an admin API token") || !strings.Contains(first, strings.TrimSpace(string(token))) ||
		!strings.Contains(first, "using the local PostgreSQL") {
		t.Fatalf("first run: no token shown, or the default store not said:\n%s", first)
	}
	second := up(2)
	again, _ := os.ReadFile(filepath.Join(home, "admin-token"))
	if strings.Contains(second, "Created an admin API token") || string(again) != string(token) {
		t.Fatalf("second run made a new token:\n%s", second)
	}
}

func httpGet(url string) (string, int) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return "", 0
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return string(body), res.StatusCode
}
