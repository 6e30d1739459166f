package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/api/apitest"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/cli"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// run parses args as the binary does and runs the command against the API.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := kingpin.New("stale-exporter", "")
	commands := cli.AddCommands(app)
	command, err := app.Parse(args)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	var out bytes.Buffer
	err = commands.Run(context.Background(), command, &out)
	return out.String(), err
}

func server(t *testing.T) (*apitest.Server, []string) {
	t.Helper()
	now := time.Now()
	snap := &stale.Snapshot{ScannedAt: now, Observations: []stale.Observation{{
		Instance:  stale.Instance{ID: "i1", ContainerID: strings.Repeat("ab", 32), ProjectName: "shop", StageName: "preview", ImageTag: "pr-9"},
		Container: stale.Container{Found: true, State: "exited"},
		Verdict:   stale.Verdict{Stale: true, LastAlive: now.Add(-36 * time.Hour)},
	}}}
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: snap}})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(s.Tokens[auth.RoleAdmin]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, []string{"--url=" + s.URL, "--token-file=" + tokenFile}
}

func TestList(t *testing.T) {
	_, flags := server(t)
	out, err := run(t, append([]string{"list"}, flags...)...)
	if err != nil || !strings.Contains(out, "DAYS SINCE LAST ALIVE") || !strings.Contains(out, "i1") ||
		!strings.Contains(out, "abababababab ") || !strings.Contains(out, "1.50") {
		t.Fatalf("list: %v\n%s", err, out)
	}
}

func TestCleanup(t *testing.T) {
	s, flags := server(t)
	out, err := run(t, append([]string{"cleanup", "--dry-run", "i1"}, flags...)...)
	if err != nil || out != "i1\twould_remove\n" {
		t.Fatalf("dry run: %v %q", err, out)
	}
	if asked := s.Cleaner.Asked(); len(asked) != 1 || !asked[0].DryRun || asked[0].RequestedBy != "test-admin" {
		t.Fatalf("asked %+v", asked)
	}
	// One removed, one refused, one still running: exit non-zero, each said.
	s.Cleaner.Job = func(r apitest.Request) (store.Job, error) {
		switch r.ID {
		case "kept":
			return store.Job{ID: 2, InstanceID: r.ID, State: store.JobDone, Result: store.ResultSkipped, Code: string(cleanup.CodeKept), Reason: "kept"}, nil
		case "slow":
			return store.Job{ID: 3, InstanceID: r.ID, State: store.JobPending}, nil
		case "gone":
			return store.Job{}, cleanup.ErrUnknownInstance
		}
		return store.Job{ID: 1, InstanceID: r.ID, State: store.JobDone, Result: store.ResultRemoved}, nil
	}
	out, err = run(t, append([]string{"cleanup", "i1", "kept", "slow", "gone"}, flags...)...)
	for _, want := range []string{"i1\tremoved\n", "kept\tskipped: kept\n", "slow\tpending (still in progress", "gone\terror: no instance gone (HTTP 404)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "2 of 4 cleanups did not remove") {
		t.Fatalf("error %v, want 2 of 4 not removed", err)
	}
}

func TestCleanupAll(t *testing.T) {
	s, flags := server(t)
	out, err := run(t, append([]string{"cleanup", "--all", "--dry-run"}, flags...)...)
	if err != nil || !strings.Contains(out, "stale, 1 asked") || !strings.Contains(out, "would_remove") {
		t.Fatalf("cleanup --all --dry-run: %v\n%s", err, out)
	}
	if asked := s.Cleaner.Asked(); len(asked) != 1 || asked[0].Trigger != store.TriggerBulk || !asked[0].DryRun {
		t.Fatalf("asked %+v", asked)
	}
	for _, args := range [][]string{{"cleanup"}, {"cleanup", "--all", "i1"}} {
		if _, err := run(t, append(args, flags...)...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestEngines(t *testing.T) {
	s, flags := server(t)
	out, err := run(t, append([]string{"engines"}, flags...)...)
	if err != nil || !strings.Contains(out, "LAST SEEN") || !strings.Contains(out, "host-a ") {
		t.Fatalf("engines: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"engines", "forget", "host-a"}, flags...)...); err != nil || out != "forgot engine host-a\n" {
		t.Fatalf("forget: %v %q", err, out)
	}
	if len(s.Engines.Forgot) != 1 {
		t.Fatalf("forgot %v", s.Engines.Forgot)
	}
	if _, err := run(t, append([]string{"engines", "forget", "host-a"}, flags...)...); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("forget again: %v, want the API's 404", err)
	}
}

// Errors are one line that says what went wrong: no exporter, no JSON, a
// refused token.
func TestErrors(t *testing.T) {
	notAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }))
	defer notAPI.Close()
	_, flags := server(t)
	t.Setenv(cli.TokenEnv, "not-a-token")
	for name, c := range map[string]struct {
		args []string
		has  string
	}{
		"unreachable": {[]string{"list", "--url=http://127.0.0.1:1"}, "reach the exporter"},
		"not the API": {[]string{"list", "--url=" + notAPI.URL}, "not the exporter's JSON answer"},
		"bad token":   {[]string{"list", flags[0]}, "invalid bearer token (HTTP 401)"},
		"token file":  {[]string{"list", "--token-file=/nonexistent"}, "read token file"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.has) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", name, err, c.has)
		}
	}
}

func TestKeepAndUnkeep(t *testing.T) {
	s, flags := server(t)
	out, err := run(t, append([]string{"keep", "i1", "--until", "forever", "--reason", "demo"}, flags...)...)
	if err != nil || out != "i1\tkept until forever by test-admin: demo\n" || !s.Cleaner.Keeps["i1"].Forever() {
		t.Fatalf("keep: %v %q", err, out)
	}
	if out, err := run(t, append([]string{"unkeep", "i1"}, flags...)...); err != nil || out != "i1\tkeep lifted\n" {
		t.Fatalf("unkeep: %v %q", err, out)
	}
	if _, err := run(t, append([]string{"unkeep", "i1"}, flags...)...); err == nil || !strings.Contains(err.Error(), "no keep") {
		t.Fatalf("unkeep again: %v", err)
	}
	if _, err := run(t, append([]string{"keep", "i1", "--until", "someday", "--reason", "x"}, flags...)...); err == nil {
		t.Fatal("keep --until someday was accepted")
	}
}

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for raw, want := range map[string]string{
		"forever": "forever", "72h": "2026-11-26T12:00:00Z", "7d": "2026-11-30T12:00:00Z", "2026-12-24": "2026-12-24T00:00:00Z",
		"2026-12-24T08:00:00+02:00": "2026-12-24T06:00:00Z",
	} {
		if got, err := cli.ParseUntil(raw, now); err != nil || got != want {
			t.Errorf("ParseUntil(%q) = %q %v, want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{"", "never", "tomorrow", "-1h", "Forever"} {
		if _, err := cli.ParseUntil(raw, now); err == nil {
			t.Errorf("ParseUntil(%q) accepted", raw)
		}
	}
}
