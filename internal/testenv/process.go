package testenv

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary finds the first of names on PATH.
func Binary(tb testing.TB, names ...string) string {
	tb.Helper()
	needsServices(tb)
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Unavailable(tb, "none of %v on PATH", names)
	return ""
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a program a test started.
type Process struct {
	cmd *exec.Cmd
	// group: signals go to the process group (the program and its children).
	group  bool
	mu     sync.Mutex
	output bytes.Buffer
	done   chan struct{}
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

// Output is what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (and its children, for StartGroup).
func (p *Process) Signal(sig os.Signal) error {
	if p.group {
		return syscall.Kill(-p.cmd.Process.Pid, sig.(syscall.Signal))
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to 10s, then kills. It is safe to call
// more than once.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Start runs a program until the test ends; its output is logged if the
// test fails.
func Start(tb testing.TB, env []string, name string, args ...string) *Process {
	tb.Helper()
	return start(tb, false, env, name, args...)
}

// StartGroup is Start for a program that starts others (a script, make):
// it runs in a process group of its own, and Stop stops the whole group.
func StartGroup(tb testing.TB, env []string, name string, args ...string) *Process {
	tb.Helper()
	return start(tb, true, env, name, args...)
}

func start(tb testing.TB, group bool, env []string, name string, args ...string) *Process {
	tb.Helper()
	p := &Process{cmd: exec.Command(name, args...), group: group, done: make(chan struct{})}
	if group {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.Env = env
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("output of %s:\n%s", name, p.Output())
		}
	})
	return p
}

// WaitHTTP waits until url answers 200.
func WaitHTTP(tb testing.TB, url string, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer 200 within %s", url, timeout)
}

// engineProxy forwards requests to the Docker socket at path.
func engineProxy(path string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: "docker"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}},
	}
}

// engine forwards requests to the local Docker socket.
var engine = engineProxy("/var/run/docker.sock")

// EngineActs sends a request a DockerProxy intercepted on to the engine and
// throws the answer away, so that an intercept can let the engine act and
// then lose the answer, as a cut connection or a restarting engine does.
func EngineActs(r *http.Request) { engine.ServeHTTP(discardAnswer{}, r) }

// EngineServes sends a request a DockerProxy intercepted on to the engine
// and its answer back, so that an intercept can watch or cut (by r's
// context) what it passes on.
func EngineServes(w http.ResponseWriter, r *http.Request) { engine.ServeHTTP(w, r) }

type discardAnswer struct{}

func (discardAnswer) Header() http.Header         { return http.Header{} }
func (discardAnswer) Write(b []byte) (int, error) { return len(b), nil }
func (discardAnswer) WriteHeader(int)             {}

// DockerProxy fronts the local Docker socket on a loopback port, so that a
// test can see the real engine fail. intercept may answer a request itself
// (returning true); otherwise the request goes to the engine. It returns a
// DOCKER_HOST value.
func DockerProxy(tb testing.TB, intercept func(w http.ResponseWriter, r *http.Request) bool) string {
	tb.Helper()
	return serveDockerProxy(tb, engine, intercept)
}

// DockerProxyTo is DockerProxy in front of the engine listening on socket.
func DockerProxyTo(tb testing.TB, socket string, intercept func(w http.ResponseWriter, r *http.Request) bool) string {
	tb.Helper()
	return serveDockerProxy(tb, engineProxy(socket), intercept)
}

func serveDockerProxy(tb testing.TB, upstream *httputil.ReverseProxy, intercept func(w http.ResponseWriter, r *http.Request) bool) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			upstream.ServeHTTP(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "tcp://" + ln.Addr().String()
}
