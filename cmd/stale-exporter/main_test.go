package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mdlayher/vsock"
	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

func TestStartupErrorsAreOneClearLine(t *testing.T) {
	binary := testenv.BuildExporter(t)
	db := storetest.New(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yml")
	webConfig := filepath.Join(dir, "web.yml")
	writeFile(t, tokens, "tokens:\n  - {name: a, role: admin, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}\n")
	writeFile(t, webConfig, "basic_auth_users:\n  ops: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n")
	// A platform whose instances table lacks what the contract needs.
	misfit := storetest.Platform(t, "CREATE TABLE instances (id integer PRIMARY KEY)")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for name, args := range map[string][]string{
		"listen address taken": {"--store.dsn=" + db.DSN, "--web.listen-address=" + taken.Addr().String()},
		"basic auth beside bearer tokens": {"--store.dsn=" + db.DSN, "--api.tokens-file=" + tokens,
			"--web.config.file=" + webConfig},
		"Docker host with a password": {"--store.dsn=" + db.DSN, "--docker.host=tcp://ops:s3cret@127.0.0.1:1",
			"--docker.timeout=2s"},
		"negative threshold":                  {"--store.dsn=" + db.DSN, "--stale.threshold=-1h"},
		"threshold over 100 years":            {"--store.dsn=" + db.DSN, "--stale.threshold=900000h"},
		"write timeout under the wait":        {"--store.dsn=" + db.DSN, "--web.write-timeout=5s"},
		"bad DSN":                             {"--store.dsn=postgres://u:s3cret@[::1"},
		"a platform schema that does not fit": {"--store.dsn=" + misfit, "--docker.timeout=2s"},
		"no workers":                          {"--store.dsn=" + db.DSN, "--cleanup.workers=0"},
		"missing tokens file":                 {"--store.dsn=" + db.DSN, "--api.tokens-file=/nonexistent/tokens.yml"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(binary, append(args, "--web.listen-address="+testenv.FreeAddr(t))...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; stderr:\n%s", err, stderr.String())
			}
			var errorLines []string
			for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if strings.Contains(line, "level=ERROR") {
					errorLines = append(errorLines, line)
				}
			}
			if len(errorLines) != 1 || strings.Contains(stderr.String(), "goroutine ") {
				t.Fatalf("want exactly one error line and no stack trace, got:\n%s", stderr.String())
			}
			if strings.Contains(stderr.String(), "s3cret") || strings.Contains(stderr.String(), "closed pool") {
				t.Fatalf("stderr leaks a password, or work started before the failure:\n%s", stderr.String())
			}
		})
	}
}

func TestServeAndShutDown(t *testing.T) {
	binary := testenv.BuildExporter(t)
	testenv.Docker(t)
	db := storetest.New(t)
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(binary, "--web.listen-address="+addr, "--log.level=debug")
	cmd.Env = append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	base := "http://" + addr
	testenv.WaitHTTP(t, base+"/-/healthy", 20*time.Second)
	// Without --docker.host-name the engine's own name (here, this machine's).
	engine, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	host := `{docker_host="` + engine + `"}`
	for path, want := range map[string]string{
		"/-/healthy": "Healthy",
		"/-/ready":   "Ready",
		"/metrics":   "stale_exporter_scan_success" + host + " 1",
		"/":          "stale-exporter",
	} {
		body, status := get(t, base+path)
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, body lacks %q:\n%.400s", path, status, want, body)
		}
	}
	body, _ := get(t, base+"/metrics")
	for _, name := range []string{"stale_exporter_build_info", "go_goroutines", "process_cpu_seconds_total",
		"stale_exporter_threshold_seconds" + host + " 604800"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit 15s after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("no shutdown log line:\n%s", stderr.String())
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b), res.StatusCode
}

// The operator commands against a real running exporter.
func TestOperatorCommands(t *testing.T) {
	binary := testenv.BuildExporter(t)
	docker := testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()
	var ids, cids []string
	for _, tag := range []string{"pr-9", "pr-10"} {
		id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: "preview", ImageTag: tag, CreatedAt: time.Now().Add(-time.Hour)})
		cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
		ids, cids = append(ids, id), append(cids, cid)
	}
	tokens, secrets := testenv.Tokens(t, dir, auth.RoleAdmin)
	secret, tokenFile := secrets[auth.RoleAdmin], filepath.Join(dir, "token")
	writeFile(t, tokenFile, secret+"\n")
	certFile, keyFile := testenv.Certificate(t, dir)
	webConfig := filepath.Join(dir, "web.yml")
	writeFile(t, webConfig, "tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n")
	addr := testenv.FreeAddr(t)
	// Every instance is stale here: the mass-stale guard is opened for the
	// bulk cleanup.
	testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), binary, "--web.listen-address="+addr, "--web.config.file="+webConfig,
		"--api.tokens-file="+tokens, "--stale.threshold=1s", "--collector.cache-ttl=100ms", "--cleanup.max-stale-ratio=1")
	waitFor(t, "the exporter to be ready over TLS", 20*time.Second, func() bool {
		_, _, code := runCommand(binary, nil, "cleanups", "--url=https://"+addr, "--tls.insecure-skip-verify", "--token-file="+tokenFile)
		return code == 0
	})
	time.Sleep(time.Second) // the containers age past the threshold

	exists := func(cid string) bool {
		_, err := docker.ContainerInspect(context.Background(), cid, client.ContainerInspectOptions{})
		return err == nil
	}
	run := func(args ...string) (string, string, int) {
		return runCommand(binary, nil, append(args, "--url=https://"+addr, "--tls.ca-file="+certFile, "--token-file="+tokenFile)...)
	}
	if out, errOut, code := run("list"); code != 0 || !strings.Contains(out, "DAYS SINCE LAST ALIVE") || !strings.Contains(out, ids[0]) || !strings.Contains(out, "pr-10") {
		t.Fatalf("list: %d\n%s%s", code, out, errOut)
	}
	for project, want := range map[string]int{"shop": 2, "nope": 0} {
		out, errOut, code := run("list", "-o", "json", "--project", project)
		var got struct {
			Total     int               `json:"total"`
			Instances []json.RawMessage `json:"instances"`
		}
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Total != want || len(got.Instances) != want {
			t.Fatalf("list -o json --project %s: %d %v\n%s%s", project, code, err, out, errOut)
		}
	}
	if out, _, code := run("keep", ids[1], "--until", "1h", "--reason", "a demo", "-o", "json"); code != 0 || !strings.Contains(out, `"kept_by": "test-admin"`) {
		t.Fatalf("keep: %d %s", code, out)
	}
	if out, _, code := run("unkeep", ids[1]); code != 0 || out != ids[1]+"\tkeep lifted\n" {
		t.Fatalf("unkeep: %d %q", code, out)
	}
	if out, _, code := run("cleanup", "--dry-run", ids[0]); code != 0 || !strings.Contains(out, ids[0]+"\twould_remove") {
		t.Fatalf("cleanup --dry-run: %d %s", code, out)
	}
	// --all without --yes and without a terminal asks nothing of the exporter.
	if _, errOut, code := run("cleanup", "--all"); code != 1 || !strings.Contains(errOut, "confirm with --yes") || !exists(cids[0]) || !exists(cids[1]) {
		t.Fatalf("cleanup --all without --yes: exit %d %s", code, errOut)
	}
	out, errOut, code := run("cleanup", "--all", "--yes", "--max", "1")
	if left := btoi(exists(cids[0])) + btoi(exists(cids[1])); code != 0 || !strings.Contains(out, "2 stale, 1 asked") || !strings.Contains(out, "\tremoved") || left != 1 {
		t.Fatalf("cleanup --all --yes --max 1: exit %d, %d containers left\n%s%s", code, left, out, errOut)
	}
	out, _, code = run("cleanups", "-o", "json", "--limit", "1")
	var jobs []struct {
		JobID  int64  `json:"job_id"`
		Result string `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &jobs); code != 0 || err != nil || len(jobs) != 1 || jobs[0].Result != "removed" {
		t.Fatalf("cleanups -o json: %d %v %s", code, err, out)
	}
	if out, _, code := run("cleanups", fmt.Sprint(jobs[0].JobID)); code != 0 || !strings.Contains(out, "JOB  INSTANCE") || !strings.Contains(out, "bulk") {
		t.Fatalf("cleanups %d: %d %s", jobs[0].JobID, code, out)
	}
	last := ids[1]
	if exists(cids[0]) {
		last = ids[0]
	}
	out, _, code = runCommand(binary, []string{"STALE_EXPORTER_TOKEN=" + secret}, "cleanup", "--url=https://"+addr, "--tls.ca-file="+certFile, last)
	if code != 0 || !strings.Contains(out, last+"\tremoved") || exists(cids[0]) || exists(cids[1]) {
		t.Fatalf("cleanup with the token from the environment: %d %s", code, out)
	}
	// Asked again, a removal answers the same job; with nothing stale,
	// --all asks nothing: neither is a failure.
	if out, _, code := run("cleanup", last); code != 0 || !strings.Contains(out, last+"\tremoved") {
		t.Fatalf("cleanup of a removed instance: %d %s", code, out)
	}
	if out, _, code := run("cleanup", "--all", "--yes"); code != 0 || out != "0 stale, 0 asked\n" {
		t.Fatalf("cleanup --all with nothing stale: %d %q", code, out)
	}
	var engine string
	if err := db.Pool.QueryRow(context.Background(), "SELECT name FROM stale_exporter_engines").Scan(&engine); err != nil {
		t.Fatal(err)
	}
	if out, _, code := run("engines"); code != 0 || !strings.Contains(out, "LAST SEEN") || !strings.Contains(out, engine+" ") {
		t.Fatalf("engines: %d %s", code, out)
	}
	if out, _, code := run("engines", "forget", engine); code != 0 || !strings.Contains(out, "forgot engine "+engine) {
		t.Fatalf("engines forget: %d %s", code, out)
	}
	for name, args := range map[string][]string{
		"forget unknown": {"engines", "forget", "no-such-engine"},
		"no ids":         {"cleanup"},
		"ids and --all":  {"cleanup", "--all", ids[0]},
		"unknown id":     {"cleanup", "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"},
		"unknown job":    {"cleanups", "999999"},
		"too short":      {"list", "--timeout=1ns"},
	} {
		out, errOut, code := run(args...)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.HasPrefix(errOut, "stale-exporter "+args[0]) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one line", name, code, out, errOut)
		}
	}
	for name, args := range map[string][]string{
		"unreachable":     {"list", "--url=http://127.0.0.1:1"},
		"not its CA":      {"list", "--url=https://" + addr, "--token-file=" + tokenFile},
		"plain HTTP":      {"list", "--url=http://" + addr, "--token-file=" + tokenFile},
		"bad token":       {"list", "--url=https://" + addr, "--tls.ca-file=" + certFile, "--token-file=" + tokens},
		"output unknown":  {"list", "-o", "yaml"},
		"no token at all": {"list", "--url=https://" + addr, "--tls.insecure-skip-verify"},
	} {
		out, errOut, code := runCommand(binary, nil, args...)
		if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want a failure in a line or two", name, code, out, errOut)
		}
	}
}

// runCommand runs the binary with env added to the environment (the
// token variable emptied first) and answers stdout, stderr and the exit
// code.
func runCommand(binary string, env []string, args ...string) (string, string, int) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "STALE_EXPORTER_TOKEN="), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Tokens from the commands, as an operator adds them: tokens add edits the
// file, token's entry is appended to it, SIGHUP reloads it; the token
// itself is never in the file.
func TestTokensCommandsAndReload(t *testing.T) {
	binary := testenv.BuildExporter(t)
	testenv.Docker(t)
	db := storetest.New(t)
	file := filepath.Join(t.TempDir(), "tokens.yml")
	command := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	admin, _ := command("tokens", "add", "--file="+file, "--name=admin", "--role=admin")
	admin = strings.TrimSpace(admin)
	addr := testenv.FreeAddr(t)
	exporter := testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), binary,
		"--web.listen-address="+addr, "--api.tokens-file="+file)
	testenv.WaitHTTP(t, "http://"+addr+"/-/ready", 20*time.Second)
	status := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/engines", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := status(admin); got != http.StatusOK {
		t.Fatalf("the token tokens add made: %d", got)
	}
	var viewers []string
	for _, name := range []string{"grafana", "ana"} {
		entry, secret := command("token", "--name="+name, "--role=viewer")
		lines := strings.Split(strings.TrimSpace(secret), "\n")
		viewers = append(viewers, lines[len(lines)-1])
		f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(entry); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	raw, _ := os.ReadFile(file)
	for _, secret := range append(viewers, admin) {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("a token is in the file:\n%s", raw)
		}
	}
	if got := status(viewers[1]); got != http.StatusUnauthorized {
		t.Fatalf("an appended token before the reload: %d", got)
	}
	if err := exporter.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for status(viewers[1]) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the appended tokens not accepted 10s after SIGHUP")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := status(viewers[0]); got != http.StatusOK {
		t.Fatalf("the first appended token after the reload: %d", got)
	}
	// A file broken by hand: SIGHUP keeps the tokens in force.
	writeFile(t, file, "tokens: [\n")
	if err := exporter.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if got := status(admin); got != http.StatusOK {
		t.Fatalf("after a SIGHUP with a broken file: %d, want the tokens in force", got)
	}
}

// Started while PostgreSQL and Docker are away, the exporter serves /metrics
// saying so, is not ready and answers the API 503; it comes up by itself,
// migrations and all, once they are back.
func TestStartsWithoutItsBackends(t *testing.T) {
	binary := testenv.BuildExporter(t)
	testenv.Docker(t)
	dsn := testenv.Database(t) // empty: the exporter migrates it once it answers
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	network, target := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, target = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	postgres := testenv.NewForwarder(t, filepath.Join(dir, ".s.PGSQL.5432"), network, target)
	engine := testenv.NewForwarder(t, filepath.Join(dir, "docker.sock"), "unix", "/var/run/docker.sock")
	addr := testenv.FreeAddr(t)
	testenv.Start(t, nil, binary, "--web.listen-address="+addr, "--docker.host-name=test-engine",
		"--store.dsn=host="+dir+" port=5432 dbname="+cfg.Database, "--docker.host=unix://"+filepath.Join(dir, "docker.sock"),
		"--docker.timeout=2s", "--store.timeout=2s")
	base := "http://" + addr
	testenv.WaitHTTP(t, base+"/-/healthy", 20*time.Second)
	metricsSay := func(want ...string) bool {
		body, _ := get(t, base+"/metrics")
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}
	const host = `{docker_host="test-engine"}`
	if !metricsSay("stale_exporter_store_up"+host+" 0", "stale_exporter_docker_up"+host+" 0", "stale_exporter_scan_success"+host+" 0",
		"stale_exporter_build_info") {
		body, _ := get(t, base+"/metrics")
		t.Fatalf("/metrics while both are away:\n%s", body)
	}
	if body, status := get(t, base+"/-/ready"); status != http.StatusServiceUnavailable || !strings.Contains(body, "PostgreSQL and Docker") {
		t.Fatalf("/-/ready while both are away: %d %s", status, body)
	}
	body, status := get(t, base+"/api/containers/stale")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"starting"`) {
		t.Fatalf("the API while both are away: %d %s", status, body)
	}

	postgres.Start()
	waitFor(t, "store_up 1 once PostgreSQL is back", 30*time.Second, func() bool {
		return metricsSay("stale_exporter_store_up"+host+" 1", "stale_exporter_docker_up"+host+" 0")
	})
	if body, status := get(t, base+"/-/ready"); status != http.StatusServiceUnavailable || !strings.Contains(body, "Docker") {
		t.Fatalf("/-/ready while Docker is away: %d %s", status, body)
	}
	engine.Start()
	waitFor(t, "ready once Docker is back too", 30*time.Second, func() bool {
		_, status := get(t, base+"/-/ready")
		return status == http.StatusOK
	})
	if !metricsSay("stale_exporter_scan_success"+host+" 1", "stale_exporter_store_up"+host+" 1", "stale_exporter_docker_up"+host+" 1") {
		body, _ := get(t, base+"/metrics")
		t.Fatalf("/metrics once started:\n%s", body)
	}
	if _, status := get(t, base+"/api/containers/stale"); status != http.StatusOK {
		t.Fatalf("the API once started: %d", status)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The listeners of the exporter-toolkit's flags: the sockets systemd passes
// (--web.systemd-socket, here from systemd-socket-activate, as the .socket
// unit does), and vsock:// addresses, which work where the kernel has the
// transport and fail with a clear line where it does not.
func TestToolkitListeners(t *testing.T) {
	binary := testenv.BuildExporter(t)
	testenv.Docker(t)
	db := storetest.New(t)
	activate := testenv.Binary(t, "systemd-socket-activate")
	addr := testenv.FreeAddr(t)
	testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), activate, "--listen="+addr,
		binary, "--web.systemd-socket", "--web.telemetry-path=/stale-metrics")
	testenv.WaitHTTP(t, "http://"+addr+"/-/ready", 20*time.Second)
	if body, status := get(t, "http://"+addr+"/stale-metrics"); status != http.StatusOK || !strings.Contains(body, "stale_exporter_scan_success") {
		t.Fatalf("metrics on the systemd socket at --web.telemetry-path: %d\n%.300s", status, body)
	}
	if _, status := get(t, "http://"+addr+"/metrics"); status == http.StatusOK {
		t.Error("/metrics still served beside --web.telemetry-path")
	}

	// Without systemd's sockets, --web.systemd-socket is one clear line.
	out, err := exec.Command(binary, "--web.systemd-socket", "--store.dsn="+db.DSN).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "systemd passed no listening socket") {
		t.Fatalf("--web.systemd-socket without sockets: %v\n%s", err, out)
	}

	cmd := exec.Command(binary, "--web.listen-address=vsock://:19117", "--store.dsn="+db.DSN)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		// This kernel has no vsock transport: the line says so.
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "listen on vsock://:19117") ||
			strings.Contains(stderr.String(), "too many colons") {
			t.Fatalf("vsock where the kernel refuses it: %v\n%s", err, stderr.String())
		}
		t.Logf("vsock refused here, clearly: %s", lastLine(stderr.String()))
	case <-time.After(3 * time.Second):
		// Listening on vsock: it serves there (through the loopback
		// transport, where the kernel has it) and stops on SIGTERM.
		if !strings.Contains(stderr.String(), ":19117") {
			t.Errorf("vsock listener not logged:\n%s", stderr.String())
		}
		if conn, err := vsock.Dial(vsock.Local, 19117, nil); err != nil {
			t.Logf("no vsock loopback to request through: %v", err)
		} else {
			c := http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
			res, err := c.Get("http://vsock/-/healthy")
			if err != nil {
				t.Errorf("GET /-/healthy over vsock: %v", err)
			} else if res.Body.Close(); res.StatusCode != http.StatusOK {
				t.Errorf("GET /-/healthy over vsock: %s", res.Status)
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-done; err != nil {
			t.Fatalf("vsock listener: exit %v\n%s", err, stderr.String())
		}
		t.Log("vsock listened on here")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
