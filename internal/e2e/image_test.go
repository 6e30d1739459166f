package e2e_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"gopkg.in/yaml.v3"

	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// TestComposeFile validates docker-compose.yml with docker-compose and
// checks what the stack promises: ports on localhost only, health checks,
// start order, named volumes, and the shipped files mounted.
func TestComposeFile(t *testing.T) {
	compose := testenv.Binary(t, "docker-compose")
	cmd := exec.Command(compose, "config")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Ports       []any                     `yaml:"ports"`
			Healthcheck map[string]any            `yaml:"healthcheck"`
			DependsOn   map[string]map[string]any `yaml:"depends_on"`
			Volumes     []any                     `yaml:"volumes"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "stale-exporter", "prometheus", "alertmanager", "grafana"} {
		svc, ok := cfg.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if svc.Healthcheck == nil {
			t.Errorf("%s has no health check", name)
		}
		for _, p := range svc.Ports {
			if !strings.Contains(fmt.Sprint(p), "127.0.0.1") {
				t.Errorf("%s publishes %v beyond localhost", name, p)
			}
		}
	}
	mounts := fmt.Sprint(cfg.Services["stale-exporter"].Volumes, cfg.Services["prometheus"].Volumes,
		cfg.Services["alertmanager"].Volumes, cfg.Services["grafana"].Volumes)
	for _, want := range []string{"/var/run/docker.sock", "alerts", "dashboards"} {
		if !strings.Contains(mounts, want) {
			t.Errorf("no mount of %s", want)
		}
	}
	// Prometheus and Alertmanager start whatever the exporter does (it
	// waits for PostgreSQL itself), or nobody would hear it is down.
	for _, name := range []string{"prometheus", "alertmanager"} {
		if _, ok := cfg.Services[name].DependsOn["stale-exporter"]; ok {
			t.Errorf("%s waits for the exporter: %+v", name, cfg.Services[name].DependsOn)
		}
	}
	if _, ok := cfg.Services["stale-exporter"].DependsOn["postgres"]; !ok ||
		cfg.Services["grafana"].DependsOn["prometheus"]["condition"] != "service_healthy" {
		t.Errorf("start order: %+v", cfg.Services["stale-exporter"].DependsOn)
	}
	for _, v := range []string{"secrets", "postgres-data", "prometheus-data", "grafana-data"} {
		if _, ok := cfg.Volumes[v]; !ok {
			t.Errorf("no named volume %s", v)
		}
	}
}

// TestDockerImage builds the repository's Dockerfile from a local Go base
// image made from this machine's toolchain and module cache (no registry is
// needed), then runs the image as the compose stack does.
func TestDockerImage(t *testing.T) {
	docker := testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	base := "stale-exporter-test/go:local"
	importGoImage(t, ctx, docker, base)
	image := "stale-exporter-test/stale-exporter:local"
	scratch, version, revision, date := "scratch", "1.2.3-test", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T00:00:00Z"
	res, err := docker.ImageBuild(ctx, repoContext(t), client.ImageBuildOptions{
		Tags: []string{image}, Remove: true, ForceRemove: true,
		BuildArgs: map[string]*string{"GO_IMAGE": &base, "RUNTIME_IMAGE": &scratch, "VERSION": &version, "REVISION": &revision,
			"BUILD_DATE": &date},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.DrainProgress(res.Body); err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() {
		_, _ = docker.ImageRemove(context.Background(), image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})

	inspect, err := docker.ImageInspect(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	if u := inspect.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "root") {
		t.Fatalf("image runs as %q, want a non-root user", u)
	}
	if inspect.Size > 40<<20 {
		t.Errorf("image is %d MiB, want a small static image", inspect.Size>>20)
	}

	for label, want := range map[string]string{
		"org.opencontainers.image.version": version, "org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created": date, "org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.source": "https://github.com/docker-watcher/stale-exporter",
	} {
		if got := inspect.Config.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q", label, got, want)
		}
	}
	out, code := runImage(t, ctx, docker, image, nil, "--version")
	if code != 0 || !strings.Contains(out, "stale-exporter, version "+version) || !strings.Contains(out, "revision: "+revision) {
		t.Fatalf("--version: exit %d\n%s", code, out)
	}
	if size := imageFileSize(t, ctx, docker, image, "/etc/ssl/certs/ca-certificates.crt"); size < 1000 {
		t.Errorf("the CA bundle in the image is %d bytes", size)
	}
	// As in compose: the init container writes the secrets into a fresh
	// named volume as the non-root user.
	volume := "stale-exporter-test-secrets-" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() {
		_, _ = docker.VolumeRemove(context.Background(), volume, client.VolumeRemoveOptions{Force: true})
	})
	mounts := []mount.Mount{{Type: mount.TypeVolume, Source: volume, Target: "/secrets"}}
	out, code = runImage(t, ctx, docker, image, mounts, "init-secrets", "--dir=/secrets")
	if code != 0 || !strings.Contains(out, "Admin API token") {
		t.Fatalf("init-secrets in a fresh volume: exit %d\n%s", code, out)
	}
	out, code = runImage(t, ctx, docker, image, mounts, "init-secrets", "--dir=/secrets")
	if code != 0 || strings.Contains(out, "Admin API token") {
		t.Fatalf("init-secrets again: exit %d\n%s", code, out)
	}
	out, code = runImage(t, ctx, docker, image, nil, "healthcheck", "--url=http://127.0.0.1:1/-/ready")
	if code == 0 {
		t.Fatalf("healthcheck of nothing succeeded:\n%s", out)
	}
}

// imageFileSize is the size of a file in an image, from a container made
// and never started.
func imageFileSize(t *testing.T, ctx context.Context, docker *client.Client, image, path string) int64 {
	t.Helper()
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: image}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	}()
	st, err := docker.ContainerStatPath(ctx, created.ID, client.ContainerStatPathOptions{Path: path})
	if err != nil {
		t.Fatalf("%s in the image: %v", path, err)
	}
	return st.Stat.Size
}

func runImage(t *testing.T, ctx context.Context, docker *client.Client, image string, mounts []mount.Mount, args ...string) (string, int64) {
	t.Helper()
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: args},
		HostConfig: &container.HostConfig{NetworkMode: "none", Mounts: mounts},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	}()
	wait := docker.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	var code int64
	select {
	case r := <-wait.Result:
		code = r.StatusCode
	case err := <-wait.Error:
		t.Fatal(err)
	}
	logs, err := docker.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	raw, _ := io.ReadAll(logs)
	return string(raw), code
}

// importGoImage makes a base image of this machine's Go toolchain and module
// cache, offline (GOPROXY=off).
func importGoImage(t *testing.T, ctx context.Context, docker *client.Client, name string) {
	t.Helper()
	// Everything `go mod download` in the Dockerfile asks for, into this
	// machine's cache first.
	download := exec.Command("go", "mod", "download")
	download.Dir = repo
	if out, err := download.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := addTree(tw, strings.TrimSpace(string(goroot)), "usr/local/go", func(rel string) bool {
			return rel == "test" || rel == "api" || rel == "doc"
		})
		if err == nil {
			err = addTree(tw, filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download"), "go/pkg/mod/cache/download", nil)
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777})
		}
		if err == nil {
			// As the golang image has them: the CA bundle the runtime
			// image copies for TLS.
			err = addFile(tw, "/etc/ssl/certs/ca-certificates.crt", "etc/ssl/certs/ca-certificates.crt")
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	res, err := docker.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, name, client.ImageImportOptions{
		Changes: []string{
			"ENV PATH=/usr/local/go/bin",
			"ENV GOPATH=/go",
			"ENV GOMODCACHE=/go/pkg/mod",
			"ENV GOPROXY=off",
			"ENV GOSUMDB=off",
			"ENV GOTOOLCHAIN=local",
			"ENV HOME=/tmp",
			"ENV GOCACHE=/tmp/go-build",
		},
	})
	if err != nil {
		t.Fatalf("import Go base image: %v", err)
	}
	defer res.Close()
	if err := testenv.DrainProgress(res); err != nil {
		t.Fatalf("import Go base image: %v", err)
	}
	t.Cleanup(func() {
		_, _ = docker.ImageRemove(context.Background(), name, client.ImageRemoveOptions{Force: true})
	})
}

// addFile writes the file at path into tw as name, with its directories.
func addFile(tw *tar.Writer, path, name string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	parts := strings.Split(filepath.Dir(name), "/")
	for i := range parts {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(parts[:i+1], "/") + "/", Mode: 0o755}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(raw))}); err != nil {
		return err
	}
	_, err = tw.Write(raw)
	return err
}

// addTree writes the files under root into tw below prefix.
func addTree(tw *tar.Writer, root, prefix string, skip func(rel string) bool) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if skip != nil && rel != "." && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join(prefix, rel))
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}

// repoContext is the build context: the files git tracks.
func repoContext(t *testing.T) io.Reader {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(repo, name))
		if err != nil {
			continue // deleted in the work tree
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}
