package e2e_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// cluster is a PostgreSQL cluster of the test's own, so that it can be
// stopped and frozen without touching the server other tests use.
type cluster struct {
	t    *testing.T
	bin  string
	dir  string
	sock string
	port int
}

// startCluster creates and starts a cluster in a temporary directory,
// owned by the postgres user (PostgreSQL refuses to run as root).
func startCluster(t *testing.T) *cluster {
	t.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		testenv.Unavailable(t, "no PostgreSQL server binaries under /usr/lib/postgresql")
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		testenv.Unavailable(t, "runuser: %v", err)
	}
	root, err := os.MkdirTemp("", "stale-chaos-pg")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: filepath.Dir(initdbs[len(initdbs)-1]), dir: filepath.Join(root, "data"), sock: root}
	_, portText, err := net.SplitHostPort(testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	c.port = port
	c.run("chown", "postgres", root)
	c.run("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "initdb"), "-D", c.dir, "-A", "trust", "-U", "postgres", "--no-sync")
	c.start()
	t.Cleanup(func() {
		c.thaw()
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(root)
	})
	return c
}

func (c *cluster) run(name string, args ...string) {
	c.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// DSN of a database of the cluster.
func (c *cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s connect_timeout=3", c.sock, c.port, db)
}

func (c *cluster) start() {
	c.t.Helper()
	c.run("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-w", "-l", filepath.Join(c.sock, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses='' -c fsync=off", c.port, c.sock), "start")
}

// crash stops the cluster the way a crash would (no clean shutdown).
func (c *cluster) crash() {
	c.t.Helper()
	c.run("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-m", "immediate", "-w", "stop")
}

// pids are the postmaster and its children.
func (c *cluster) pids() []int {
	raw, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	master, err := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])
	if err != nil {
		return nil
	}
	pids := []int{master}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(master) {
			pid, _ := strconv.Atoi(strings.SplitN(string(b), " ", 2)[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// freeze stops every process of the cluster (SIGSTOP), as a hung database.
func (c *cluster) freeze() {
	for _, pid := range c.pids() {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
}

func (c *cluster) thaw() {
	for _, pid := range c.pids() {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	time.Sleep(100 * time.Millisecond)
}
