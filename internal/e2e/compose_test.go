package e2e_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// debianImage is the base the stand-ins are built on, made with debootstrap
// from Debian's packages and imported.
const debianImage = "stale-exporter-test/debian:bookworm"

// ensureDebianImage builds the Debian base image unless the engine has it.
func ensureDebianImage(t *testing.T, ctx context.Context, docker *client.Client) {
	t.Helper()
	if _, err := docker.ImageInspect(ctx, debianImage); err == nil {
		return
	}
	debootstrap := testenv.Binary(t, "debootstrap")
	root := filepath.Join(t.TempDir(), "root")
	mirror := "http://deb.debian.org/debian"
	if out, err := exec.CommandContext(ctx, debootstrap, "--variant=minbase", "bookworm", root, mirror).CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(string(out), 2000))
	}
	tarball := exec.CommandContext(ctx, "tar", "-C", root, "-c", ".")
	stdout, err := tarball.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Start(); err != nil {
		t.Fatal(err)
	}
	res, err := docker.ImageImport(ctx, client.ImageImportSource{Source: stdout, SourceName: "-"}, debianImage, client.ImageImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if err := testenv.DrainProgress(res); err != nil {
		t.Fatalf("import the Debian image: %v", err)
	}
	if err := tarball.Wait(); err != nil {
		t.Fatal(err)
	}
}

// buildStandIn builds one stand-in image from testdata/standins/name.
func buildStandIn(t *testing.T, ctx context.Context, docker *client.Client, name string) string {
	t.Helper()
	dir := filepath.Join("testdata", "standins", name)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := addTree(tw, dir, "", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	image := "stale-exporter-test/" + name + ":standin"
	base := debianImage
	res, err := docker.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{image}, Remove: true, ForceRemove: true,
		BuildArgs: map[string]*string{"BASE": &base}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := testenv.DrainProgress(res.Body); err != nil {
		t.Fatalf("build the %s stand-in: %v", name, err)
	}
	return image
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// The shipped docker-compose.yml, started for real: every service healthy,
// a stale container alerted by the stack's Prometheus, delivered by its
// Alertmanager and removed by its exporter; data and secrets survive down
// and up; down -v removes them. Images are local stand-ins (no registry
// here); a compose override shortens the timings only, as TestPipeline does.
func TestComposeStack(t *testing.T) {
	compose := testenv.Binary(t, "docker-compose")
	docker := testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	started := time.Now()
	ensureDebianImage(t, ctx, docker)
	goImage := "stale-exporter-test/go:local"
	importGoImage(t, ctx, docker, goImage)
	images := map[string]string{}
	for _, name := range []string{"postgres", "prometheus", "alertmanager", "grafana"} {
		images[name] = buildStandIn(t, ctx, docker, name)
	}
	t.Logf("images ready in %s", time.Since(started).Round(time.Second))

	dir := t.TempDir()
	alerts := filepath.Join(dir, "alerts")
	if err := os.MkdirAll(alerts, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(alerts, "stale-exporter.rules.yml"), shortened(t, "alerts/stale-exporter.rules.yml",
		map[string]string{`for: \d+m`: "for: 3s"}))
	write(t, filepath.Join(alerts, "prometheus.yml"), shortened(t, "alerts/prometheus.yml", map[string]string{
		`scrape_interval: 30s`: "scrape_interval: 1s", `evaluation_interval: 30s`: "evaluation_interval: 1s"}))
	// The people's mail relay is a port nothing listens on in the
	// Alertmanager container: no mail leaves the machine.
	write(t, filepath.Join(alerts, "alertmanager.yml"), shortened(t, "alerts/alertmanager.yml", map[string]string{
		`group_wait: 30s`: "group_wait: 1s", `group_interval: 5m`: "group_interval: 2s",
		`smarthost: smtp.example.com:587`: "smarthost: localhost:1", `require_tls: true`: "require_tls: false"}))
	if err := os.MkdirAll(filepath.Join(alerts, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(alerts, "templates", "stale-exporter.tmpl"), shortened(t, "alerts/templates/stale-exporter.tmpl", nil))
	for _, f := range []string{filepath.Join(alerts, "stale-exporter.rules.yml"), filepath.Join(alerts, "prometheus.yml"),
		filepath.Join(alerts, "alertmanager.yml"), filepath.Join(alerts, "templates", "stale-exporter.tmpl")} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	override := write(t, filepath.Join(dir, "timings.yml"), fmt.Sprintf(`services:
  stale-exporter:
    command: [--api.tokens-file=/secrets/api-tokens.yml, --docker.host=unix:///var/run/docker.sock,
              --stale.threshold=5s, --collector.scan-interval=2s, --collector.cache-ttl=1s, --cleanup.grace=0s]
  prometheus:
    volumes: [%[1]s:/etc/prometheus/stale:ro]
  alertmanager:
    volumes: [%[1]s:/etc/alertmanager/stale:ro]
`, alerts))
	gid := "999"
	if out, err := exec.Command("getent", "group", "docker").Output(); err == nil {
		gid = strings.Split(strings.TrimSpace(string(out)), ":")[2]
	}
	project := fmt.Sprintf("staletest%d", time.Now().UnixNano()%100000)
	env := append(os.Environ(), "COMPOSE_PROJECT_NAME="+project, "DOCKER_GID="+gid,
		"GO_IMAGE="+goImage, "RUNTIME_IMAGE=scratch", "POSTGRES_IMAGE="+images["postgres"],
		"PROMETHEUS_IMAGE="+images["prometheus"], "ALERTMANAGER_IMAGE="+images["alertmanager"], "GRAFANA_IMAGE="+images["grafana"])
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, compose, append([]string{"-f", "docker-compose.yml", "-f", override}, args...)...)
		cmd.Dir, cmd.Env = repo, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 4000))
		}
		return string(out)
	}
	t.Cleanup(func() {
		cmd := exec.Command(compose, "-f", "docker-compose.yml", "-f", override, "down", "-v", "--remove-orphans")
		cmd.Dir, cmd.Env = repo, env
		_ = cmd.Run()
	})
	healthy := func() {
		t.Helper()
		eventually(t, "every service of the stack healthy", 4*time.Minute, func() bool {
			list, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true,
				Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
			if err != nil || len(list.Items) < 6 {
				return false
			}
			for _, c := range list.Items {
				service := c.Labels["com.docker.compose.service"]
				if service == "init" {
					if c.State != "exited" || !strings.Contains(c.Status, "Exited (0)") {
						return false
					}
				} else if !strings.Contains(c.Status, "(healthy)") {
					return false
				}
			}
			return true
		})
	}
	run("build", "stale-exporter")
	run("up", "-d")
	healthy()
	t.Logf("stack healthy %s after the start", time.Since(started).Round(time.Second))
	logs := run("logs", "--no-color", "init")
	if strings.Count(logs, "Admin API token") != 1 {
		t.Fatalf("init printed the admin token %d times, want once:\n%s", strings.Count(logs, "Admin API token"), logs)
	}

	// A stale container on the host's engine, with its row in the stack's
	// PostgreSQL: alerted, delivered, removed.
	id := "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}})
	psql := func(sql string) string {
		t.Helper()
		return run("exec", "-T", "postgres", "psql", "-U", "stale", "-d", "platform", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql)
	}
	// Two running instances keep the share of stale ones under the guard.
	running := []string{"7f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "8f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"}
	rows := fmt.Sprintf("('%s', '%s', 'stopped')", id, cid)
	for _, r := range running {
		rcid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: r}, Start: true})
		rows += fmt.Sprintf(", ('%s', '%s', 'running')", r, rcid)
	}
	psql(`WITH p AS (INSERT INTO projects (name) VALUES ('shop') RETURNING id),
		s AS (INSERT INTO stages (project_id, name) SELECT id, 'preview' FROM p RETURNING id, project_id)
		INSERT INTO instances (id, stage_id, project_id, container_id, image_tag, status, created_at)
		SELECT v.id::uuid, s.id, s.project_id, v.cid, 'pr-1', v.status, now() - interval '30 days'
		FROM s, (VALUES ` + rows + `) AS v(id, cid, status)`)
	eventually(t, "the stale container removed by the stack", 3*time.Minute, func() bool {
		return !exists(t, docker, cid) && strings.TrimSpace(psql("SELECT count(*) FROM instances WHERE id = '"+id+"'")) == "0"
	})
	if n := strings.TrimSpace(psql("SELECT count(*) FROM instances")); n != "2" {
		t.Fatalf("instances left: %s, want the 2 running", n)
	}
	events := strings.TrimSpace(psql("SELECT count(*) FROM event_log"))
	t.Logf("stale container alerted, delivered and removed %s after the start; %s events", time.Since(started).Round(time.Second), events)

	// down and up: data and secrets survive in the named volumes.
	run("down")
	run("up", "-d")
	healthy()
	if got := strings.TrimSpace(psql("SELECT count(*) FROM event_log")); got != events {
		t.Fatalf("events after down and up: %s, want %s", got, events)
	}
	if logs := run("logs", "--no-color", "init"); strings.Contains(logs, "Admin API token") {
		t.Fatalf("secrets made anew after down and up:\n%s", logs)
	}
	// down -v removes them.
	run("down", "-v")
	volumes, err := docker.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
	if err != nil {
		t.Fatal(err)
	}
	if len(volumes.Items) != 0 {
		t.Fatalf("%d volumes left after down -v", len(volumes.Items))
	}
	t.Logf("compose test took %s", time.Since(started).Round(time.Second))
}
