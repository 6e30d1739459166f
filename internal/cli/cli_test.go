package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/api/apitest"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/cli"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// run parses args as the binary does and runs the command against the API,
// with no terminal.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := ask(t, nil, args...)
	return out, err
}

// ask runs a command as run does, on a terminal that answers answer (nil:
// no terminal); it answers stdout and what was asked on stderr.
func ask(t *testing.T, answer *string, args ...string) (string, string, error) {
	t.Helper()
	app := kingpin.New("stale-exporter", "")
	commands := cli.AddCommands(app)
	command, err := app.Parse(args)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	var out, asked bytes.Buffer
	term := cli.Terminal{In: strings.NewReader(""), Out: &out, Err: &asked}
	if answer != nil {
		term.In, term.Interactive = strings.NewReader(*answer), true
	}
	err = commands.Run(context.Background(), command, term)
	return out.String(), asked.String(), err
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
	for _, want := range []string{"i1\tremoved\n", "kept\tskipped: kept\n", "slow\tpending (still in progress: stale-exporter cleanups 3)", "gone\terror: no instance gone (HTTP 404, not_found)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A job still in progress is not removed, yet.
	if err == nil || err.Error() != "3 of 4 asked were not removed" {
		t.Fatalf("error %v, want 3 of 4 not removed", err)
	}
	out, err = run(t, append([]string{"cleanup", "-o", "json", "i1", "gone"}, flags...)...)
	var outcomes []cli.Outcome
	if jerr := json.Unmarshal([]byte(out), &outcomes); jerr != nil || len(outcomes) != 2 || outcomes[0].Job == nil || outcomes[0].Job.Result != store.ResultRemoved ||
		outcomes[1].Job != nil || !strings.Contains(outcomes[1].Error, "no instance gone") || err == nil {
		t.Fatalf("cleanup -o json: %v %v\n%s", err, jerr, out)
	}
}

func TestCleanupAll(t *testing.T) {
	s, flags := server(t)
	out, err := run(t, append([]string{"cleanup", "--all", "--dry-run", "--max", "3"}, flags...)...)
	// The fake bulk cleanup says as many stale as the cap it was given.
	if err != nil || !strings.Contains(out, "3 stale, 1 asked") || !strings.Contains(out, "would_remove") {
		t.Fatalf("cleanup --all --dry-run: %v\n%s", err, out)
	}
	if asked := s.Cleaner.Asked(); len(asked) != 1 || asked[0].Trigger != store.TriggerBulk || !asked[0].DryRun {
		t.Fatalf("asked %+v", asked)
	}
	for _, args := range [][]string{{"cleanup"}, {"cleanup", "--all", "i1"}, {"cleanup", "--max", "2", "i1"}, {"cleanup", "--all", "--max=-1", "--yes"}} {
		if _, err := run(t, append(args, flags...)...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}

	// Without a terminal and without --yes, nothing is asked of the server.
	before := len(s.Cleaner.Asked())
	if _, err := run(t, append([]string{"cleanup", "--all"}, flags...)...); err == nil || !strings.Contains(err.Error(), "confirm with --yes") {
		t.Fatalf("cleanup --all without a terminal: %v", err)
	}
	// On a terminal: a dry run is shown, and only yes goes on.
	no, yes := "n\n", "y\n"
	_, asked, err := ask(t, &no, append([]string{"cleanup", "--all"}, flags...)...)
	if err == nil || !strings.Contains(asked, "a dry run would remove 1: bulk-target") || !strings.Contains(asked, "[y/N]") {
		t.Fatalf("answered no: %v, asked %q", err, asked)
	}
	if got := s.Cleaner.Asked()[before:]; len(got) != 1 || !got[0].DryRun {
		t.Fatalf("answered no, the server was asked %+v; want only the dry run", got)
	}
	if out, _, err := ask(t, &yes, append([]string{"cleanup", "--all"}, flags...)...); err != nil || !strings.Contains(out, "bulk-target\tremoved") {
		t.Fatalf("answered yes: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"cleanup", "--all", "--yes", "-o", "json"}, flags...)...); err != nil || !strings.Contains(out, `"result": "removed"`) {
		t.Fatalf("--yes -o json: %v\n%s", err, out)
	}
	// A bulk cleanup that did not remove everything exits non-zero.
	s.Cleaner.Job = func(r apitest.Request) (store.Job, error) {
		return store.Job{ID: 9, InstanceID: r.ID, Trigger: r.Trigger, State: store.JobDone, Result: store.ResultSkipped, Code: string(cleanup.CodeRunning), Reason: "running"}, nil
	}
	if out, err := run(t, append([]string{"cleanup", "--all", "--yes"}, flags...)...); err == nil || err.Error() != "1 of 1 asked were not removed" || !strings.Contains(out, "skipped: running") {
		t.Fatalf("--all with a refusal: %v\n%s", err, out)
	}
}

// cleanups reads the job history, or one job.
func TestCleanups(t *testing.T) {
	s, flags := server(t)
	if _, err := run(t, append([]string{"cleanup", "i1"}, flags...)...); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, append([]string{"cleanups"}, flags...)...)
	if err != nil || !strings.Contains(out, "JOB  INSTANCE") || !strings.Contains(out, "removed") {
		t.Fatalf("cleanups: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"cleanups", "1", "-o", "json"}, flags...)...)
	var job struct {
		JobID      int64  `json:"job_id"`
		InstanceID string `json:"instance_id"`
	}
	if jerr := json.Unmarshal([]byte(out), &job); err != nil || jerr != nil || job.JobID != 1 || job.InstanceID != "i1" {
		t.Fatalf("cleanups 1 -o json: %v %v\n%s", err, jerr, out)
	}
	for args, has := range map[string]string{"cleanups 99": "no cleanup job 99", "cleanups x": "not a positive number", "cleanups --limit 0": "--limit 0"} {
		if _, err := run(t, append(strings.Fields(args), flags...)...); err == nil || !strings.Contains(err.Error(), has) {
			t.Errorf("%s: %v, want %q", args, err, has)
		}
	}
	s.Cleaner.Err = apitest.ErrStore
	if _, err := run(t, append([]string{"cleanups", "1"}, flags...)...); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("cleanups with the store down: %v", err)
	}
}

// list follows the cursor to the last page, with its filters, and says the
// total.
func TestListPages(t *testing.T) {
	now := time.Now()
	var obs []stale.Observation
	for i := range 1234 {
		project := "shop"
		if i%2 == 1 {
			project = "blog"
		}
		obs = append(obs, stale.Observation{
			Instance:  stale.Instance{ID: fmt.Sprintf("i%04d", i), ContainerID: fmt.Sprintf("c%04d", i), ProjectName: project, StageName: "preview", ImageTag: "t"},
			Container: stale.Container{Found: true, State: "exited"},
			Verdict:   stale.Verdict{Stale: true, LastAlive: now.Add(-time.Duration(i+48) * time.Hour)},
		})
	}
	s, flags := server(t)
	s.Scans.Set(scan.Result{Success: true, Snapshot: &stale.Snapshot{ScannedAt: now, Observations: obs}})
	for args, want := range map[string]int{"list": 1234, "list --project shop": 617, "list --project blog --stage preview": 617, "list --stage nope": 0} {
		out, err := run(t, append(append(strings.Fields(args), "-o", "json"), flags...)...)
		var got struct {
			Total     int                  `json:"total"`
			Instances []api.StaleContainer `json:"instances"`
		}
		if jerr := json.Unmarshal([]byte(out), &got); err != nil || jerr != nil || got.Total != want || len(got.Instances) != want {
			t.Fatalf("%s: %v %v, total %d, %d rows; want %d", args, err, jerr, got.Total, len(got.Instances), want)
		}
		seen := map[string]bool{}
		for _, r := range got.Instances {
			if seen[r.InstanceID] {
				t.Fatalf("%s: %s twice", args, r.InstanceID)
			}
			seen[r.InstanceID] = true
		}
	}
}

// The exporter behind TLS: trusted with --tls.ca-file or
// --tls.insecure-skip-verify, refused otherwise.
func TestTLS(t *testing.T) {
	s := apitest.New(t, apitest.Options{TLS: true, Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(s.Tokens[auth.RoleViewer]), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"engines", "--url=" + s.URL, "--token-file=" + tokenFile}
	if _, err := run(t, flags...); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown certificate: %v", err)
	}
	if out, err := run(t, append(flags, "--tls.ca-file="+s.CAFile)...); err != nil || !strings.Contains(out, "host-a") {
		t.Fatalf("--tls.ca-file: %v %s", err, out)
	}
	if _, err := run(t, append(flags, "--tls.insecure-skip-verify")...); err != nil {
		t.Fatalf("--tls.insecure-skip-verify: %v", err)
	}
	if _, err := run(t, append(flags, "--tls.ca-file="+tokenFile)...); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without a certificate: %v", err)
	}
}

// --timeout bounds an answer that does not come.
func TestTimeout(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	start := time.Now()
	_, err := run(t, "list", "--url="+hang.URL, "--timeout=200ms")
	if err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Fatalf("a hanging exporter: %v", err)
	}
	t.Logf("gave up after %s", time.Since(start).Round(time.Millisecond))
	if _, err := run(t, "list", "--url="+hang.URL, "--timeout=0s"); err == nil {
		t.Fatal("--timeout 0 was accepted")
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
		"not a URL":   {[]string{"list", "--url=127.0.0.1:9817"}, "not an http:// or https:// address"},
		"not the API": {[]string{"list", "--url=" + notAPI.URL}, "not the exporter's JSON answer"},
		"bad token":   {[]string{"list", flags[0]}, "invalid bearer token (HTTP 401, unauthorized)"},
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
