// Package alerts holds the Prometheus rules, the Alertmanager configuration
// and the Prometheus configuration shipped with stale-exporter; its tests run
// promtool and amtool on them.
package alerts_test

import (
	"os/exec"
	"strings"
	"testing"

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
