package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// TestDebianPackage builds the release with `make dist` (goreleaser, as a
// snapshot), installs its .deb with dpkg, verifies the systemd units with
// systemd-analyze, then starts the installed binary the way its unit does:
// as the package's user, with its defaults file, on a socket passed as
// systemd passes it, against this machine's PostgreSQL and Docker. Last it
// purges the package. It refuses to run where stale-exporter is installed
// already, rather than replace an install it did not make.
func TestDebianPackage(t *testing.T) {
	testenv.Docker(t)
	dpkg := testenv.Binary(t, "dpkg")
	analyze := testenv.Binary(t, "systemd-analyze")
	activate := testenv.Binary(t, "systemd-socket-activate")
	setpriv := testenv.Binary(t, "setpriv")
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "installing a package needs root")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "stale-exporter").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("stale-exporter is installed on this machine already (%s): not replacing it", out)
	}

	// make dist.
	started := time.Now()
	dist := exec.Command("make", "dist")
	dist.Dir = repo
	out, err := dist.CombinedOutput()
	if err != nil {
		t.Fatalf("make dist: %v\n%s", err, tail(string(out), 3000))
	}
	t.Logf("make dist took %s:\n%s", time.Since(started).Round(time.Second), distListing(string(out)))
	debs, _ := filepath.Glob(filepath.Join(repo, "dist", "stale-exporter_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make dist made %d amd64 .deb files, want 1", len(debs))
	}
	for _, pattern := range []string{"stale-exporter-*.linux-amd64.tar.gz", "stale-exporter-*.linux-arm64.tar.gz",
		"stale-exporter_*_arm64.deb", "stale-exporter-*.x86_64.rpm", "stale-exporter-*.aarch64.rpm", "sha256sums.txt"} {
		if m, _ := filepath.Glob(filepath.Join(repo, "dist", pattern)); len(m) != 1 {
			t.Errorf("dist/ has %d files like %s, want 1", len(m), pattern)
		}
	}
	checkSums(t, filepath.Join(repo, "dist"))

	// dpkg -i, and dpkg --purge when the test ends.
	if out, err := exec.Command(dpkg, "-i", debs[0]).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(dpkg, "--purge", "stale-exporter").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
		for _, gone := range []string{"/usr/bin/stale-exporter", "/usr/lib/systemd/system/stale-exporter.service",
			"/etc/default/stale-exporter", "/etc/stale-exporter/tokens.yml"} {
			if _, err := os.Stat(gone); err == nil {
				t.Errorf("%s left after dpkg --purge", gone)
			}
		}
	})
	checkInstalled(t)
	units := []string{"/usr/lib/systemd/system/stale-exporter.service", "/usr/lib/systemd/system/stale-exporter.socket"}
	if out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput(); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	} else if len(bytes.TrimSpace(out)) > 0 {
		t.Logf("systemd-analyze verify says:\n%s", out)
	}

	// The store: a database of the package's user, reached as the unit
	// reaches it (the local socket, peer authentication).
	db := packageDatabase(t)
	appendLine(t, "/etc/default/stale-exporter", fmt.Sprintf("STALE_EXPORTER_STORE_DSN=\"host=/var/run/postgresql dbname=%s\"", db))
	env := defaultsEnv(t, "/etc/default/stale-exporter")

	// An operator appends a token's entry to the installed tokens file, as
	// the README says, and adds another with tokens add (both as root).
	var viewer, entryErr bytes.Buffer
	entry := exec.Command("/usr/bin/stale-exporter", "token", "--name=dash", "--role=viewer")
	entry.Stdout, entry.Stderr = &viewer, &entryErr
	if err := entry.Run(); err != nil {
		t.Fatalf("token: %v\n%s", err, entryErr.String())
	}
	appendLine(t, "/etc/stale-exporter/tokens.yml", strings.TrimRight(viewer.String(), "\n"))
	var token, addErr bytes.Buffer
	add := exec.Command("/usr/bin/stale-exporter", "tokens", "add", "--name=ops", "--role=admin")
	add.Stdout, add.Stderr = &token, &addErr
	if err := add.Run(); err != nil {
		t.Fatalf("tokens add: %v\n%s", err, addErr.String())
	}

	// ExecStart as the unit has it, its $ARGS from the defaults file.
	execStart := unitExecStart(t, units[0], env)
	addr := testenv.FreeAddr(t)
	// systemd-socket-activate passes on only what -E names, as systemd
	// passes only the unit's environment.
	args := []string{"--listen=" + addr}
	for _, kv := range env {
		args = append(args, "-E", kv)
	}
	args = append(append(args, setpriv, "--reuid=stale-exporter", "--regid=stale-exporter", "--init-groups", "--"), execStart...)
	exporter := testenv.Start(t, nil, activate, args...)
	base := "http://" + addr
	testenv.WaitHTTP(t, base+"/-/ready", 60*time.Second)
	metrics, _ := httpGet(base + "/metrics")
	revision, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`stale_exporter_scan_success{docker_host=`, `revision="` + strings.TrimSpace(string(revision)) + `"`,
		`version="`, `stale_exporter_docker_up{docker_host=`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the installed exporter's /metrics lack %s:\n%.1500s", want, metrics)
		}
	}
	if !regexp.MustCompile(`stale_exporter_scan_success\{docker_host="[^"]+"\} 1`).MatchString(metrics) {
		t.Errorf("the installed exporter's scans fail:\n%s", exporter.Output())
	}
	// The token added as root is read by the unit's user.
	if status, body := call(t, "GET", base+"/api/engines", strings.TrimSpace(token.String()), ""); status != 200 {
		t.Errorf("the token from tokens add: %d %s", status, body)
	}
	// token says the token itself last, on stderr.
	words := strings.Fields(entryErr.String())
	if status, body := call(t, "GET", base+"/api/engines", words[len(words)-1], ""); status != 200 {
		t.Errorf("the token whose entry was appended: %d %s", status, body)
	}
	if err := exporter.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exporter.Stop()
}

// distListing is the file list scripts/dist.sh prints last.
func distListing(out string) string {
	if i := strings.LastIndex(out, "goreleaser took"); i >= 0 {
		return out[i:]
	}
	return tail(out, 1000)
}

// checkSums checks sha256sums.txt against the files it names.
func checkSums(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("sha256sum", "--check", "--strict", "sha256sums.txt")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
}

// checkInstalled checks what the package put in place: the binary, the
// user (in the docker group), the defaults file and the tokens file with
// their owners and modes.
func checkInstalled(t *testing.T) {
	t.Helper()
	u, err := user.Lookup("stale-exporter")
	if err != nil {
		t.Fatalf("no user stale-exporter: %v", err)
	}
	groups, _ := u.GroupIds()
	docker, err := user.LookupGroup("docker")
	if err != nil {
		t.Fatalf("no docker group: %v", err)
	}
	inDocker := false
	for _, g := range groups {
		inDocker = inDocker || g == docker.Gid
	}
	if !inDocker {
		t.Errorf("user stale-exporter is not in the docker group (groups %v)", groups)
	}
	for path, want := range map[string]struct {
		mode  os.FileMode
		owner string
	}{
		"/etc/default/stale-exporter":    {0o640, "root:stale-exporter"},
		"/etc/stale-exporter":            {0o750, "root:stale-exporter"},
		"/etc/stale-exporter/tokens.yml": {0o600, "stale-exporter:stale-exporter"},
		"/usr/bin/stale-exporter":        {0o755, "root:root"},
	} {
		info, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		st := info.Sys().(*syscall.Stat_t)
		owner, _ := user.LookupId(fmt.Sprint(st.Uid))
		group, _ := user.LookupGroupId(fmt.Sprint(st.Gid))
		if got := owner.Username + ":" + group.Name; info.Mode().Perm() != want.mode || got != want.owner {
			t.Errorf("%s: %#o %s, want %#o %s", path, info.Mode().Perm(), got, want.mode, want.owner)
		}
	}
	out, err := exec.Command("/usr/bin/stale-exporter", "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "snapshot") || strings.Contains(string(out), "revision: unknown") {
		t.Errorf("the installed --version: %v\n%s", err, out)
	}
}

// packageDatabase makes a PostgreSQL role named as the package's user (if
// none exists) and a database it owns, both dropped when the test ends.
func packageDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "host=/var/run/postgresql dbname=postgres")
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stale-exporter')`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE ROLE "stale-exporter" LOGIN`); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("stale_package_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name+` OWNER "stale-exporter"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), "host=/var/run/postgresql dbname=postgres")
		if err != nil {
			t.Errorf("drop the package's database: %v", err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop the package's database: %v", err)
		}
		if !exists {
			if _, err := conn.Exec(context.Background(), `DROP ROLE IF EXISTS "stale-exporter"`); err != nil {
				t.Errorf("drop the package's role: %v", err)
			}
		}
	})
	return name
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		t.Fatal(err)
	}
}

// defaultsEnv is the environment an EnvironmentFile gives a unit, read by a
// shell as systemd reads the simple KEY="value" lines it holds.
func defaultsEnv(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("env", "-i", "bash", "-c", `set -a; . "$0"; env -0`, path).Output()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var env []string
	for _, kv := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if k, _, _ := strings.Cut(kv, "="); k == "ARGS" || strings.HasPrefix(k, "STALE_EXPORTER_") || strings.HasPrefix(k, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH=/usr/bin:/bin")
}

// unitExecStart is the unit's ExecStart with $ARGS expanded from env.
func unitExecStart(t *testing.T, unit string, env []string) []string {
	t.Helper()
	f, err := os.Open(unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var args string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "ARGS="); ok {
			args = v
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			var out []string
			for _, word := range strings.Fields(line) {
				if word == "$ARGS" {
					out = append(out, strings.Fields(args)...)
					continue
				}
				out = append(out, word)
			}
			return out
		}
	}
	t.Fatalf("%s has no ExecStart", unit)
	return nil
}
