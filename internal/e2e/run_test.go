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

	// Stop PostgreSQL (the cluster behind the default socket) and dockerd.
	cluster := socketCluster(t)
	superusers := superuserNames(t)
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
		!strings.Contains(first, "Created the PostgreSQL role stale_exporter") {
		t.Fatalf("first run: no token shown, or no role made:\n%s", first)
	}
	if !strings.Contains(first, "(version=") || strings.Contains(first, "(version=,") {
		t.Errorf("the binary the command built is not version-stamped:\n%s", first)
	}
	// Least privilege: no superuser more, the exporter's role owns its
	// database and nothing else, one Docker engine.
	if after := superuserNames(t); after != superusers {
		t.Errorf("superusers before the command: %s; after: %s", superusers, after)
	}
	if got := psql(t, "postgres", `SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication FROM pg_roles WHERE rolname = 'stale_exporter'`); got != "f" {
		t.Errorf("the role stale_exporter has more than login rights (%q)", got)
	}
	if got := psql(t, "postgres", `SELECT string_agg(datname, ',') FROM pg_database WHERE datdba = 'stale_exporter'::regrole`); got != "stale_exporter" {
		t.Errorf("the role stale_exporter owns databases %q, want only stale_exporter", got)
	}
	if n := countProcesses(t, "dockerd"); n != 1 {
		t.Errorf("%d dockerd processes after the command, want 1", n)
	}
	second := up(2)
	again, _ := os.ReadFile(filepath.Join(home, "admin-token"))
	if strings.Contains(second, "Created an admin API token") || strings.Contains(second, "Created the PostgreSQL role") || string(again) != string(token) {
		t.Fatalf("second run made a new token or role:\n%s", second)
	}

	// A store named by STALE_EXPORTER_STORE_DSN is used and never touched:
	// no role, no database made, nothing started.
	dsn := testenv.Database(t)
	roles, databases := psql(t, "postgres", "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles"),
		psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
	home = t.TempDir()
	env = append(os.Environ(), "STALE_EXPORTER_HOME="+home, "STALE_EXPORTER_LISTEN="+addr, "STALE_EXPORTER_STORE_DSN="+dsn)
	third := up(3)
	if strings.Contains(third, "Created the PostgreSQL role") || strings.Contains(third, "starting PostgreSQL") {
		t.Errorf("with STALE_EXPORTER_STORE_DSN set the command set PostgreSQL up:\n%s", third)
	}
	if r, d := psql(t, "postgres", "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles"),
		psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"); r != roles || d != databases {
		t.Errorf("with STALE_EXPORTER_STORE_DSN set, roles %s -> %s, databases %s -> %s", roles, r, databases, d)
	}
	if _, err := os.Stat(filepath.Join(home, "pgpass")); err == nil {
		t.Error("with STALE_EXPORTER_STORE_DSN set the command wrote a passfile")
	}
}

// socketCluster is the PostgreSQL cluster (version, name) on the default
// socket's port.
func socketCluster(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("pg_lsclusters", "-h").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "5432" {
			return f[:2]
		}
	}
	t.Fatalf("no cluster on port 5432:\n%s", out)
	return nil
}

func superuserNames(t *testing.T) string {
	t.Helper()
	return psql(t, "postgres", "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper")
}

// psql runs one query as PostgreSQL's superuser account and returns its answer.
func psql(t *testing.T, db, query string) string {
	t.Helper()
	cmd := exec.Command("runuser", "-u", "postgres", "--", "psql", "-h", "/var/run/postgresql", "-d", db, "-tAc", query)
	// From /: postgres may not enter the checkout's directory (a clone in a
	// private temporary directory), and psql would say so among the answer.
	cmd.Dir = "/"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psql %q: %v\n%s%s", query, err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// countProcesses counts the processes whose command is name (to count,
// never to signal).
func countProcesses(t *testing.T, name string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(comm)) == name {
			n++
		}
	}
	return n
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
