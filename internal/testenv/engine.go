package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Engine is an extra Docker engine a test runs beside the host's: its own
// socket, data and exec roots, and a bridge of its own (never --bridge=none,
// which deletes the host's docker0).
type Engine struct {
	tb     testing.TB
	dir    string
	bridge string
	proc   *Process
	// Socket is the engine's unix socket; Host its DOCKER_HOST value.
	Socket, Host string
	Client       *client.Client
}

// StartEngine starts an engine named name (at most 12 characters: it also
// names the bridge) until the test ends.
func StartEngine(tb testing.TB, name string) *Engine {
	tb.Helper()
	needsServices(tb)
	Binary(tb, "dockerd")
	dir, err := os.MkdirTemp("", "se-"+name)
	if err != nil {
		tb.Fatal(err)
	}
	e := &Engine{tb: tb, dir: dir, bridge: "se-" + name, Socket: filepath.Join(dir, "docker.sock")}
	e.Host = "unix://" + e.Socket
	if out, err := exec.Command("ip", "link", "add", e.bridge, "type", "bridge").CombinedOutput(); err != nil {
		Unavailable(tb, "create bridge %s (needs root): %v %s", e.bridge, err, out)
	}
	tb.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", e.bridge).Run()
		_ = os.RemoveAll(dir)
	})
	e.Start()
	if e.Client, err = client.New(client.WithHost(e.Host)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Client.Close() })
	return e
}

// Start starts the engine (again) and waits until it answers.
func (e *Engine) Start() {
	e.tb.Helper()
	e.proc = Start(e.tb, os.Environ(), "dockerd", "--host", e.Host, "--data-root", filepath.Join(e.dir, "data"),
		"--exec-root", filepath.Join(e.dir, "exec"), "--pidfile", filepath.Join(e.dir, "docker.pid"),
		"--bridge", e.bridge, "--iptables=false", "--ip-masq=false")
	cli, err := client.New(client.WithHost(e.Host))
	if err != nil {
		e.tb.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.tb.Fatalf("engine %s did not answer: %v\n%s", e.Host, err, e.proc.Output())
}

// Stop stops the engine (SIGTERM, as a restart would).
func (e *Engine) Stop() { e.proc.Stop() }
