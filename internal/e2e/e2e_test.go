// Package e2e tests the whole pipeline with real binaries: PostgreSQL,
// Docker, stale-exporter, Prometheus and Alertmanager, wired with the
// shipped rule, scrape and Alertmanager files.
package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// shortened rewrites the timings of a shipped file for a test that must
// finish in a minute; the expressions, matchers and routing stay as shipped.
func shortened(t *testing.T, name string, replace map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for pattern, with := range replace {
		re := regexp.MustCompile(pattern)
		if !re.MatchString(s) {
			t.Fatalf("%s: %q matches nothing; the shipped file changed", name, pattern)
		}
		s = re.ReplaceAllString(s, with)
	}
	return s
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type promAPI struct {
	t    *testing.T
	base string
}

type promSample struct {
	Metric map[string]string `json:"metric"`
}

func (p promAPI) query(expr string) []promSample {
	p.t.Helper()
	res, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Status != "success" {
		p.t.Fatalf("query %q: %v %s %s", expr, err, body.Status, body.Error)
	}
	return body.Data.Result
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for: %s", timeout, what)
}

func TestPipeline(t *testing.T) {
	started := time.Now()
	prometheus := testenv.Binary(t, "prometheus")
	alertmanager := testenv.Binary(t, "prometheus-alertmanager", "alertmanager")
	docker := testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()

	// The platform's instances: two running, a stale preview (its alert
	// carries action="cleanup" by the shipped rule) and a stale production one.
	old := time.Now().Add(-48 * time.Hour)
	instance := func(stage string, run bool) (string, string) {
		id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: stage, ImageTag: stage + "-1", CreatedAt: old})
		cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: run})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
		return id, cid
	}
	instance("preview", true)
	instance("production", true)
	cleanID, cleanCID := instance("preview", false)
	warnID, warnCID := instance("production", false)

	tokensFile, secrets := testenv.Tokens(t, dir, auth.RoleAlertmanager)
	secret := secrets[auth.RoleAlertmanager]
	credentials := write(t, filepath.Join(dir, "am-token"), secret)
	binary := testenv.BuildExporter(t)
	exporterAddr, promAddr, amAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	exporter := testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), binary,
		"--web.listen-address="+exporterAddr, "--api.tokens-file="+tokensFile, "--stale.threshold="+threshold.String(),
		"--collector.scan-interval=2s", "--collector.cache-ttl=500ms")
	testenv.WaitHTTP(t, "http://"+exporterAddr+"/-/ready", 20*time.Second)

	rulesDir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(rulesDir, "stale-exporter.rules.yml"), shortened(t, "alerts/stale-exporter.rules.yml",
		map[string]string{`for: \d+m`: "for: 3s"}))
	promConfig := write(t, filepath.Join(rulesDir, "prometheus.yml"), shortened(t, "alerts/prometheus.yml", map[string]string{
		`scrape_interval: 30s`:     "scrape_interval: 1s",
		`evaluation_interval: 30s`: "evaluation_interval: 1s",
		`stale-exporter:9817`:      exporterAddr,
		`alertmanager:9093`:        amAddr,
		`localhost:9090`:           promAddr,
	}))
	amConfig := write(t, filepath.Join(dir, "alertmanager.yml"), shortened(t, "alerts/alertmanager.yml", map[string]string{
		`http://stale-exporter:9817`:                   "http://" + exporterAddr,
		`/etc/alertmanager/secrets/alertmanager-token`: credentials,
		`group_wait: 30s`:                              "group_wait: 1s",
		`group_interval: 5m`:                           "group_interval: 2s",
		`repeat_interval: 168h`:                        "repeat_interval: 3s",
		`repeat_interval: 4h`:                          "repeat_interval: 3s",
	}))
	testenv.Start(t, nil, alertmanager, "--config.file="+amConfig, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	testenv.Start(t, nil, prometheus, "--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	testenv.WaitHTTP(t, "http://"+amAddr+"/-/ready", 30*time.Second)
	testenv.WaitHTTP(t, "http://"+promAddr+"/-/ready", 30*time.Second)
	prom := promAPI{t: t, base: "http://" + promAddr}

	// StaleContainer fires for both and reaches the webhook, which records a
	// warning for each and removes the preview one.
	eventually(t, "a warning for each stale instance", 60*time.Second, func() bool {
		return db.Count(t, "SELECT count(*) FROM event_log WHERE severity = 'warning' AND instance_id IN ($1, $2)", cleanID, warnID) == 2
	})
	firing := prom.query(`ALERTS{alertname="StaleContainer", alertstate="firing", instance_id="` + warnID + `"}`)
	if len(firing) != 1 || firing[0].Metric["action"] != "" || firing[0].Metric["stage_name"] != "production" {
		t.Fatalf("production StaleContainer alert: %+v, want one without action", firing)
	}
	eventually(t, "the preview instance's container removed and its row deleted", 60*time.Second, func() bool {
		_, err := docker.ContainerInspect(context.Background(), cleanCID, client.ContainerInspectOptions{})
		return err != nil && db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", cleanID) == 0
	})
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND trigger = 'webhook' AND result = 'removed'", cleanID); n != 1 {
		t.Fatalf("webhook cleanup jobs that removed the preview instance: %d, want 1", n)
	}

	// The removed instance's alert resolves; the other keeps firing.
	eventually(t, "the removed instance's alert resolved", 30*time.Second, func() bool {
		return len(prom.query(`ALERTS{alertname="StaleContainer", instance_id="`+cleanID+`"}`)) == 0
	})
	// Several group and repeat intervals later, still one warning per occurrence.
	time.Sleep(12 * time.Second)
	for id, name := range map[string]string{cleanID: "preview", warnID: "production"} {
		if n := db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", id); n != 1 {
			t.Errorf("%s instance: %d warnings after repeats, want 1", name, n)
		}
	}
	if n := db.Count(t, "SELECT count(*) FROM alert_occurrences"); n != 2 {
		t.Errorf("alert occurrences recorded: %d, want 2", n)
	}
	if !exists(t, docker, warnCID) || db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", warnID) != 1 {
		t.Fatal("the production instance, whose alert has no action label, was removed")
	}
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1", warnID); n != 0 {
		t.Fatalf("the production instance got %d cleanup jobs", n)
	}

	// Every dashboard query returns data from this Prometheus.
	for _, q := range dashboardQueries(t) {
		if got := prom.query(q); len(got) == 0 {
			t.Errorf("dashboard query returns nothing: %s", q)
		}
	}

	// The exporter stops: StaleContainer must not fire, StaleExporterDown must.
	exporter.Stop()
	eventually(t, "StaleExporterDown firing and StaleContainer not", 60*time.Second, func() bool {
		return len(prom.query(`ALERTS{alertname="StaleExporterDown", alertstate="firing"}`)) == 1 &&
			len(prom.query(`ALERTS{alertname="StaleContainer"}`)) == 0
	})
	t.Logf("pipeline test took %s", time.Since(started).Round(time.Second))
}

// threshold is the exporters' stale threshold in these tests: a container's
// creation is a sign of life, so the containers a test creates become stale
// this long after it.
const threshold = 2 * time.Second

func exists(t *testing.T, docker *client.Client, id string) bool {
	t.Helper()
	_, err := docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	return err == nil
}

// dashboardQueries returns every query of the shipped dashboard with
// Grafana's variables set as a viewer of all jobs would have them.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, "dashboards/stale-exporter.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$job", ".+", "$docker_host", ".*", "$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h")
	var out []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			out = append(out, vars.Replace(target.Expr))
		}
	}
	if len(out) < 8 {
		t.Fatalf("only %d dashboard queries", len(out))
	}
	return out
}
