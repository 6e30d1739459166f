package dashboards_test

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/docker-watcher/stale-exporter/dashboards"
)

// linted are the panel types the linter's panel rules read.
var linted = map[string]bool{"stat": true, "singlestat": true, "graph": true, "table": true, "timeseries": true, "gauge": true}

// units are Grafana's unit ids this project may use (a subset of
// Grafana's list: an id outside it is a finding until added here, from
// Grafana's valueFormats categories).
var units = map[string]bool{
	"none": true, "short": true, "percent": true, "percentunit": true, "bool": true, "bool_yes_no": true,
	"bytes": true, "decbytes": true, "ns": true, "µs": true, "ms": true, "s": true, "m": true, "h": true, "d": true,
	"dtdurations": true, "dtdhms": true, "dateTimeAsIso": true, "dateTimeFromNow": true, "reqps": true, "ops": true,
}

// lint answers the findings of the dashboard-linter's rules, each prefixed
// with its rule's name.
func lint(d dashboards.Dashboard) []string {
	var out []string
	add := func(rule, format string, args ...any) { out = append(out, rule+": "+fmt.Sprintf(format, args...)) }
	if d.Editable {
		add("template-uneditable-rule", "the dashboard is editable: it is provisioned from code, the code is the truth")
	}
	vars := map[string]dashboards.Variable{}
	datasources := 0
	for _, v := range d.Templating.List {
		vars[v.Name] = v
		if v.Type == "datasource" {
			datasources++
			if v.Name != "datasource" || v.Label != "Data Source" || !strings.Contains(string(v.Query), "prometheus") {
				add("template-datasource-rule", "variable %s: name it datasource, label it Data Source, of type prometheus", v.Name)
			}
		}
		if v.Type == "query" && v.Refresh != 2 {
			add("template-on-time-change-reload-rule", "%s: refresh %d, want 2 (on time range change)", v.Name, v.Refresh)
		}
	}
	if datasources != 1 {
		add("template-datasource-rule", "%d data source variables, want exactly one", datasources)
	}
	for _, name := range []string{"job", "instance"} {
		rule := "template-" + name + "-rule"
		v, ok := vars[name]
		if !ok {
			add(rule, "no %s variable", name)
			continue
		}
		if v.Label != name {
			add(rule, "%s: label %q, want %q", name, v.Label, name)
		}
		if v.Type != "query" || !strings.HasPrefix(v.QueryText(), "label_values(") {
			add(rule, "%s: not a Prometheus query variable", name)
		}
		if !usesDatasource(v.Datasource) {
			add(rule, "%s: data source is not $datasource", name)
		}
		if !v.Multi {
			add(rule, "%s: not multi", name)
		}
		if v.AllValue != ".+" {
			add(rule, "%s: allValue %q, want .+", name, v.AllValue)
		}
	}
	for _, p := range d.Panels {
		if !linted[p.Type] {
			continue
		}
		if !usesDatasource(p.Datasource) {
			add("panel-datasource-rule", "panel %d (%s) does not use $datasource", p.ID, p.Title)
		}
		if p.Title == "" || p.Description == "" {
			add("panel-title-description-rule", "panel %d (%s) lacks a title or a description", p.ID, p.Title)
		}
		switch unit := p.FieldConfig.Defaults.Unit; {
		case len(p.FieldConfig.Defaults.Mappings) > 0:
		case unit == "":
			add("panel-units-rule", "panel %d (%s) has no unit", p.ID, p.Title)
		case !units[unit]:
			add("panel-units-rule", "panel %d (%s) has unit %q, not one of Grafana's", p.ID, p.Title, unit)
		}
		for _, target := range p.Targets {
			if target.Datasource != nil && !usesDatasource(target.Datasource) {
				add("panel-datasource-rule", "panel %d (%s): a query does not use $datasource", p.ID, p.Title)
			}
			for _, sel := range selectors(target.Expr) {
				if !strings.Contains(sel.matchers, `job=~"$job"`) {
					add("target-job-rule", "panel %d: %s has no job=~\"$job\"", p.ID, sel.metric)
				}
				if !strings.Contains(sel.matchers, `instance=~"$instance"`) {
					add("target-instance-rule", "panel %d: %s has no instance=~\"$instance\"", p.ID, sel.metric)
				}
			}
			for _, r := range rangeFunctions.FindAllStringSubmatch(target.Expr, -1) {
				if r[1] != "$__rate_interval" {
					add("target-rate-interval-rule", "panel %d: a rate over [%s], want [$__rate_interval]", p.ID, r[1])
				}
			}
		}
	}
	return out
}

func usesDatasource(ds *dashboards.Datasource) bool {
	return ds != nil && (ds.UID == "$datasource" || ds.UID == "${datasource}")
}

// rangeFunctions are rate, irate and increase, with their range.
var rangeFunctions = regexp.MustCompile(`\b(?:rate|irate|increase)\s*\([^\[]*\[([^\]]*)\]`)

// selector is a vector selector of a query: its metric name and matchers.
type selector struct{ metric, matchers string }

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// grouping strips the label lists of by, without, on, ignoring and
	// the group modifiers, and ranges.
	grouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)|\[[^\]]*\]`)
	word     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// selectors finds the vector selectors of a PromQL expression: every name
// that is not a function, a keyword or a label list's, with the matchers
// in braces after it (none: "").
func selectors(expr string) []selector {
	var out []selector
	// Quoted values are kept apart so that their text is no name.
	var values []string
	masked := quoted.ReplaceAllStringFunc(expr, func(s string) string {
		values = append(values, s)
		return fmt.Sprintf("\x00%d\x00", len(values)-1)
	})
	masked = grouping.ReplaceAllString(masked, " ")
	for _, loc := range word.FindAllStringIndex(masked, -1) {
		name, rest := masked[loc[0]:loc[1]], strings.TrimLeft(masked[loc[1]:], " ")
		if loc[0] > 0 && (masked[loc[0]-1] == '{' || masked[loc[0]-1] == ',' || masked[loc[0]-1] == ' ' && inBraces(masked[:loc[0]])) {
			continue // a label name inside braces
		}
		if keywords[strings.ToLower(name)] || strings.HasPrefix(rest, "(") || inBraces(masked[:loc[0]]) {
			continue
		}
		s := selector{metric: name}
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			s.matchers = rest[1:max(end, 1)]
			for i, v := range values {
				s.matchers = strings.ReplaceAll(s.matchers, fmt.Sprintf("\x00%d\x00", i), v)
			}
		}
		out = append(out, s)
	}
	return out
}

// inBraces reports whether the end of s is inside a selector's braces.
func inBraces(s string) bool {
	return strings.LastIndexByte(s, '{') > strings.LastIndexByte(s, '}')
}
