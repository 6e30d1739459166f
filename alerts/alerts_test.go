// Package alerts holds the Prometheus rules, the Alertmanager configuration
// and the Prometheus configuration shipped with stale-exporter; its tests run
// promtool and amtool on them.
package alerts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.Binary(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRulesUnitTests(t *testing.T) {
	out := run(t, "promtool", "test", "rules", "stale-exporter.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

func TestRulesAreValid(t *testing.T) {
	run(t, "promtool", "check", "rules", "stale-exporter.rules.yml")
}

func TestPrometheusConfigIsValid(t *testing.T) {
	run(t, "promtool", "check", "config", "prometheus.yml")
}

func TestAlertmanagerConfigIsValid(t *testing.T) {
	out := run(t, "amtool", "check-config", "alertmanager.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("amtool check-config:\n%s", out)
	}
}

// The notification template, rendered by amtool on a sample group: one
// subject for the group, each firing instance once with its tag, days and
// what happens next, the resolved ones apart.
func TestNotificationTemplate(t *testing.T) {
	out := run(t, "amtool", "template", "render", "--template.glob=templates/*.tmpl",
		`--template.text={{ template "stale-exporter.subject" . }}`+"\n"+`{{ template "stale-exporter.text" . }}`,
		"--template.data=testdata/group.json")
	for _, want := range []string{
		"[stale-exporter] 2 stale containers in shop/preview\n",
		"- instance i1, image tag pr-17, container 0123456789ab on host-a\n  9.5 days since last alive\n  next: removed automatically at 2026-12-02 10:00 UTC unless kept: stale-exporter keep i1",
		"- instance i2, image tag pr-18, container 0123456789cd\n  8.0 days since last alive\n",
		"No longer stale (running again, kept, or removed):\n- instance i3, image tag pr-12\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered message lacks %q:\n%s", want, out)
		}
	}
	for _, id := range []string{"i1", "i2", "i3"} {
		if n := strings.Count(out, "instance "+id+","); n != 1 {
			t.Errorf("instance %s listed %d times, want once:\n%s", id, n, out)
		}
	}
	if html := run(t, "amtool", "template", "render", "--template.glob=templates/*.tmpl",
		`--template.text={{ template "stale-exporter.html" . }}`, "--template.data=testdata/group.json"); !strings.HasPrefix(html, "<pre>") {
		t.Errorf("html: %s", html)
	}
}

// Every runbook link of the rules points at a heading of the README.
func TestRunbooksNameReadmeHeadings(t *testing.T) {
	rules, err := os.ReadFile("stale-exporter.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			anchors[githubAnchor(heading)] = true
		}
	}
	links := regexp.MustCompile(`runbook_url: "[^"#]*README\.md#([^"]+)"`).FindAllStringSubmatch(string(rules), -1)
	if len(links) == 0 {
		t.Fatal("no runbook links in the rules")
	}
	for _, l := range links {
		if !anchors[l[1]] {
			t.Errorf("runbook #%s is no heading of the README", l[1])
		}
	}
}

// githubAnchor is the anchor GitHub gives a heading: lower case, spaces to
// hyphens, punctuation other than hyphens and underscores dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// The job selector is in one place, the stale_exporter:up rule: with it
// changed there alone, every rule unit test passes for exporters scraped
// under another job name. No alert pages: every severity is warning or info.
func TestJobSelectorInOnePlace(t *testing.T) {
	rules, err := os.ReadFile("stale-exporter.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	const selector = `up{job="stale-exporter"}`
	var doc struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
				Labels              map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(rules, &doc); err != nil {
		t.Fatal(err)
	}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if strings.Contains(r.Expr, "job=") != (r.Record == "stale_exporter:up") {
				t.Errorf("rule %s%s: the job selector belongs to stale_exporter:up alone: %s", r.Record, r.Alert, r.Expr)
			}
			if sev := r.Labels["severity"]; r.Alert != "" && sev != "warning" && sev != "info" {
				t.Errorf("alert %s has severity %q: a janitor pages nobody", r.Alert, sev)
			}
		}
	}
	tests, err := os.ReadFile("stale-exporter.rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	renamed := strings.NewReplacer(`job="stale-exporter"`, `job="docker-janitor"`, "job: stale-exporter", "job: docker-janitor").Replace(string(tests))
	for name, content := range map[string]string{
		"stale-exporter.rules.yml":      strings.Replace(string(rules), selector, `up{job="docker-janitor"}`, 1),
		"stale-exporter.rules.test.yml": renamed,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if renamed == string(tests) || !strings.Contains(string(rules), selector) {
		t.Fatal("nothing to rename: the test no longer tests the selector")
	}
	cmd := exec.Command(testenv.Binary(t, "promtool"), "test", "rules", "stale-exporter.rules.test.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the rules under job docker-janitor: %v\n%s", err, out)
	}
}
