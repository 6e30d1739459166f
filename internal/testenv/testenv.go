// Package testenv gives tests the real parts they run against: a fresh
// PostgreSQL database, a Docker engine, and a FROM-scratch test image built
// around a static Go program. Outside CI a missing part skips the test; in
// CI (CI=true) it fails it.
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// needsServices skips a test on real services under -short, which runs the
// unit layer alone.
func needsServices(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("runs on real services; skipped with -short")
	}
}

// Unavailable stops a test that lacks a real dependency: a failure in CI,
// a skip elsewhere.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		tb.Fatalf("required test dependency missing (CI=%s): %s", os.Getenv("CI"), msg)
	}
	tb.Skipf("skipping, dependency missing: %s (run `make test` to set it up)", msg)
}

// baseDSN is the server tests create their databases on.
func baseDSN() string {
	if dsn := os.Getenv("STALE_EXPORTER_TEST_DSN"); dsn != "" {
		return dsn
	}
	return "host=/var/run/postgresql dbname=postgres"
}

var startPostgres sync.Once

// Database creates a fresh, empty database for the calling test and drops it
// when the test ends. It returns the database's DSN.
func Database(tb testing.TB) string {
	tb.Helper()
	needsServices(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseDSN())
	if err != nil {
		startPostgres.Do(func() {
			// Reuse the server if it runs; otherwise try to start Debian's cluster.
			_ = exec.Command("pg_ctlcluster", "15", "main", "start").Run()
		})
		conn, err = pgx.Connect(ctx, baseDSN())
	}
	if err != nil {
		Unavailable(tb, "PostgreSQL at %q: %v", baseDSN(), err)
	}
	defer conn.Close(ctx)

	name := "stale_test_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, baseDSN())
		if err != nil {
			tb.Logf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop database %s: %v", name, err)
		}
	})
	return databaseDSN(baseDSN(), name)
}

// databaseDSN replaces the database of a URL or keyword/value DSN.
func databaseDSN(base, name string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Docker returns a client of the local Docker engine (or DOCKER_HOST).
func Docker(tb testing.TB) *client.Client {
	tb.Helper()
	needsServices(tb)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		tb.Fatalf("docker client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		Unavailable(tb, "Docker engine: %v", err)
	}
	return cli
}

// ImageName is the tag of the test image.
const ImageName = "stale-exporter-test/sleeper:latest"

var (
	buildMu sync.Mutex
	built   = map[*client.Client]bool{}
)

// Image builds the test image on the engine of cli, once per client and test
// process, and returns its name.
func Image(tb testing.TB, cli *client.Client) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if !built[cli] {
		if err := buildImage(cli); err != nil {
			tb.Fatalf("build test image: %v", err)
		}
		built[cli] = true
	}
	return ImageName
}

func buildImage(cli *client.Client) error {
	dir, err := os.MkdirTemp("", "stale-exporter-sleeper")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_, self, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "sleeper")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(filepath.Dir(self), "sleeper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build sleeper: %v: %s", err, out)
	}
	program, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY sleeper /sleeper\nENTRYPOINT [\"/sleeper\"]\n")},
		{"sleeper", 0o755, program},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{ImageName}, Remove: true, ForceRemove: true})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	return DrainProgress(res.Body)
}

// DrainProgress reads a Docker build or import progress stream to its end
// and returns the error it reports, if any, with the output before it.
func DrainProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	var tail []string
	for {
		var msg struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if msg.Stream != "" {
			tail = append(tail, msg.Stream)
			if len(tail) > 20 {
				tail = tail[1:]
			}
		}
		if msg.Error != "" {
			return fmt.Errorf("docker build: %s\n%s", msg.Error, strings.Join(tail, ""))
		}
	}
}

// ContainerSpec describes a test container.
type ContainerSpec struct {
	Labels map[string]string
	// Start runs the container; otherwise it is only created.
	Start bool
	// Exit makes a started container exit at once.
	Exit bool
	// Fill, with Exit, has the container write this many 4 KiB files before
	// it exits: into its anonymous volume if it has one, else its
	// writable layer.
	Fill int
	// RestartAlways restarts the container with its engine.
	RestartAlways bool
	// Name names the container (the engine picks one otherwise).
	Name string
	// AnonymousVolume mounts an anonymous volume at this path; NamedVolume
	// mounts the volume of that name (made if missing) at /named.
	AnonymousVolume string
	NamedVolume     string
}

// NewContainer creates (and maybe starts) a container from the test image and
// removes it when the test ends. It returns the container id.
func NewContainer(tb testing.TB, cli *client.Client, spec ContainerSpec) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := &container.Config{Image: Image(tb, cli), Labels: spec.Labels}
	if spec.Exit {
		cfg.Cmd = []string{"exit"}
		if spec.Fill > 0 {
			dir := spec.AnonymousVolume
			if dir == "" {
				dir = "/fill"
			}
			cfg.Cmd = append(cfg.Cmd, strconv.Itoa(spec.Fill), dir)
		}
	}
	host := &container.HostConfig{NetworkMode: "none"}
	if spec.AnonymousVolume != "" {
		cfg.Volumes = map[string]struct{}{spec.AnonymousVolume: {}}
	}
	if spec.NamedVolume != "" {
		host.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: spec.NamedVolume, Target: "/named"}}
	}
	if spec.RestartAlways {
		host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyAlways}
	}
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: host, Name: spec.Name})
	if err != nil {
		tb.Fatalf("create container: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	})
	if spec.Start {
		if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			tb.Fatalf("start container: %v", err)
		}
	}
	if spec.Exit {
		if _, err := WaitExited(ctx, cli, res.ID); err != nil {
			tb.Fatalf("wait for container to exit: %v", err)
		}
	}
	return res.ID
}

// WaitExited waits until a container is no longer running.
func WaitExited(ctx context.Context, cli *client.Client, id string) (container.InspectResponse, error) {
	for {
		res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return container.InspectResponse{}, err
		}
		if !res.Container.State.Running {
			return res.Container, nil
		}
		select {
		case <-ctx.Done():
			return container.InspectResponse{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RunAgain starts a stopped container made with Exit and waits until it has
// exited again: a sign of life newer than any taken before.
func RunAgain(tb testing.TB, cli *client.Client, id string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		tb.Fatalf("start container %s again: %v", id, err)
	}
	if _, err := WaitExited(ctx, cli, id); err != nil {
		tb.Fatalf("wait for container %s to exit: %v", id, err)
	}
}

// WriteFile writes a file of size bytes into a container at dir/name (its
// writable layer, or a volume mounted at dir), as a container that wrote
// data would have: disk the container holds.
func WriteFile(tb testing.TB, cli *client.Client, id, dir, name string, size int) {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size)}); err != nil {
		tb.Fatal(err)
	}
	if _, err := tw.Write(bytes.Repeat([]byte{'x'}, size)); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: &buf}); err != nil {
		tb.Fatalf("write %s/%s into container %s: %v", dir, name, id, err)
	}
}
