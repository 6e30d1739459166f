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
