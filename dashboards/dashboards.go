// Package dashboards holds the Grafana dashboards shipped with
// stale-exporter and reads them for the tests: the lint rules they keep,
// and the e2e test that runs every query on a real Prometheus.
package dashboards

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

// StaleExporter is the dashboard of stale-exporter.json.
//
//go:embed stale-exporter.json
var StaleExporter []byte

// Dashboard is the part of a dashboard the tests read.
type Dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Editable   bool    `json:"editable"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Links []struct {
		Title string `json:"title"`
		URL   string `json:"url"`
	} `json:"links"`
}

// Datasource names a panel's, a query's or a variable's data source.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is one panel and its queries.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *Datasource `json:"datasource"`
	Targets     []struct {
		Expr       string      `json:"expr"`
		Datasource *Datasource `json:"datasource"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit     string            `json:"unit"`
			Mappings []json.RawMessage `json:"mappings"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// Variable is a template variable.
type Variable struct {
	Name       string          `json:"name"`
	Label      string          `json:"label"`
	Type       string          `json:"type"`
	Datasource *Datasource     `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Refresh    int             `json:"refresh"`
}

// QueryText is the PromQL of a query variable (its query is an object in
// newer dashboards, a string in older ones).
func (v Variable) QueryText() string {
	var q struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
		return q.Query
	}
	var s string
	_ = json.Unmarshal(v.Query, &s)
	return s
}

// Parse reads a dashboard.
func Parse(raw []byte) (Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("parse the dashboard: %w", err)
	}
	return d, nil
}

// AllSelected sets Grafana's variables as a viewer who selected All would
// have them, and its interval variables to fixed ranges.
var AllSelected = strings.NewReplacer("$job", ".+", "$instance", ".+", "$docker_host", ".+", "$project", ".*", "$stage", ".*",
	"$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h")

// Queries are every panel query, variables set by vars.
func (d Dashboard) Queries(vars *strings.Replacer) []string {
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, vars.Replace(t.Expr))
		}
	}
	return out
}
