package dashboards_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/dashboards"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// The rules of Grafana's dashboard-linter (its documented rules; the tool
// itself is not at hand), checked here on the shipped dashboard.
func TestDashboardLint(t *testing.T) {
	d, err := dashboards.Parse(dashboards.StaleExporter)
	if err != nil {
		t.Fatal(err)
	}
	for _, finding := range lint(d) {
		t.Error(finding)
	}
}

// The linter finds what it is for: a dashboard with one of each mistake has
// each finding.
func TestLintFindsEachMistake(t *testing.T) {
	bad := `{"editable": true,
	  "templating": {"list": [{"name": "job", "label": "Job", "type": "query", "datasource": {"uid": "prometheus"}, "query": "label_values(up, job)", "multi": false, "allValue": ".*", "refresh": 1}]},
	  "panels": [
	    {"id": 1, "type": "stat", "title": "Up", "datasource": {"uid": "prometheus"}, "targets": [{"expr": "sum(up)"}]},
	    {"id": 2, "type": "timeseries", "title": "Rate", "description": "d", "datasource": {"uid": "${datasource}"}, "fieldConfig": {"defaults": {"unit": "seconds"}},
	     "targets": [{"expr": "rate(x_total{job=~\"$job\", instance=~\"$instance\"}[5m])"}]}
	  ]}`
	d, err := dashboards.Parse([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	findings := strings.Join(lint(d), "\n")
	for _, want := range []string{
		"template-uneditable-rule", "template-datasource-rule", "template-job-rule: job: label", "template-job-rule: job: not multi",
		"template-job-rule: job: allValue", "template-job-rule: job: data source", "template-instance-rule: no instance variable",
		"template-on-time-change-reload-rule: job", "panel-datasource-rule: panel 1", "panel-title-description-rule: panel 1",
		"panel-units-rule: panel 1 (Up) has no unit", `panel-units-rule: panel 2 (Rate) has unit "seconds"`,
		"target-job-rule: panel 1: up", "target-instance-rule: panel 1: up", "target-rate-interval-rule: panel 2",
	} {
		if !strings.Contains(findings, want) {
			t.Errorf("no finding %q in:\n%s", want, findings)
		}
	}
}

// Every query, and every variable's, is PromQL that Prometheus's own
// parser takes (promtool, on the queries as recording rules).
func TestDashboardQueriesParse(t *testing.T) {
	d, err := dashboards.Parse(dashboards.StaleExporter)
	if err != nil {
		t.Fatal(err)
	}
	exprs := d.Queries(dashboards.AllSelected)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			m := labelValues.FindStringSubmatch(v.QueryText())
			if m == nil {
				t.Errorf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, v.QueryText())
				continue
			}
			exprs = append(exprs, dashboards.AllSelected.Replace(m[1]))
		}
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %q\n", i, e)
	}
	file := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testenv.Binary(t, "promtool"), "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on %d dashboard queries: %v\n%s", len(exprs), err, out)
	}
}

func TestSelectors(t *testing.T) {
	for expr, want := range map[string]string{
		`sum(up)`: `up{}`,
		`(time() - a{job=~"$job"}) / 86400 and on (job, instance) (b{x="y{z}"} == 1)`: `a{job=~"$job"} b{x="y{z}"}`,
		`sum by (result) (increase(c_total{job="j"}[$__rate_interval]))`:              `c_total{job="j"}`,
		`topk(10, x:y:ratio{instance=~".+"} * 1000) unless ignoring (a) z`:            `x:y:ratio{instance=~".+"} z{}`,
	} {
		var got []string
		for _, s := range selectors(expr) {
			got = append(got, s.metric+"{"+s.matchers+"}")
		}
		if strings.Join(got, " ") != want {
			t.Errorf("selectors(%s) = %v, want %s", expr, got, want)
		}
	}
}
