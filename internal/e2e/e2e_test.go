// Package e2e tests the whole pipeline with real binaries: PostgreSQL,
// Docker, stale-exporter, Prometheus and Alertmanager, wired with the
// shipped rule, scrape and Alertmanager files.
package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/dashboards"
	"github.com/docker-watcher/stale-exporter/internal/api"
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

// amFiles are the replacements that wire the shipped alertmanager.yml to a
// test's parts: the exporter's webhook, the token file, the templates (by
// their path in the repository) and a mail relay.
func amFiles(t *testing.T, webhook, credentials, smarthost string) map[string]string {
	t.Helper()
	templates, err := filepath.Abs(filepath.Join(repo, "alerts", "templates"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		`http://stale-exporter:9817`:                   webhook,
		`/etc/alertmanager/secrets/alertmanager-token`: credentials,
		`- templates/\*\.tmpl`:                         "- " + templates + "/*.tmpl",
		`smarthost: smtp.example.com:587`:              "smarthost: " + smarthost,
		`require_tls: true`:                            "require_tls: false",
	}
}

// The whole pipeline on the shipped files: notice, then grace, then
// removal. StaleContainer goes by email to people, one message per project
// and stage, each instance once, saying when it will be removed; the
// webhook records each occurrence; StaleContainerCleanup fires only once
// the grace has passed, and only then is the container removed.
func TestPipeline(t *testing.T) {
	started := time.Now()
	prometheus := testenv.Binary(t, "prometheus")
	alertmanager := testenv.Binary(t, "prometheus-alertmanager", "alertmanager")
	docker := testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()

	// Running instances; two stale preview ones (cleaned automatically
	// by the shipped rule, after the grace) and a stale production one
	// (people are told; never cleaned automatically).
	old := time.Now().Add(-48 * time.Hour)
	instance := func(stage string, run bool) (string, string) {
		id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: stage, ImageTag: stage + "-1", CreatedAt: old})
		cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: run})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
		return id, cid
	}
	// Enough running ones that the stale share stays under the mass-stale guard.
	for range 2 {
		instance("preview", true)
		instance("production", true)
	}
	previewA, previewACID := instance("preview", false)
	previewB, previewBCID := instance("preview", false)
	warnID, warnCID := instance("production", false)
	// One a person keeps before it goes stale: never told about, never removed.
	keptID, keptCID := instance("preview", false)
	created := time.Now()

	tokensFile, secrets := testenv.Tokens(t, dir, auth.RoleAlertmanager, auth.RoleViewer, auth.RoleOperator)
	credentials := write(t, filepath.Join(dir, "am-token"), secrets[auth.RoleAlertmanager])
	sink := testenv.StartSMTPSink(t)
	const grace = 20 * time.Second
	exporterAddr, promAddr, amAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	exporter := testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), testenv.BuildExporter(t),
		"--web.listen-address="+exporterAddr, "--api.tokens-file="+tokensFile, "--stale.threshold="+threshold.String(),
		"--collector.scan-interval=2s", "--collector.cache-ttl=500ms", "--cleanup.grace="+grace.String())
	testenv.WaitHTTP(t, "http://"+exporterAddr+"/-/ready", 20*time.Second)
	if status, body := call(t, http.MethodPost, "http://"+exporterAddr+"/api/containers/stale/"+keptID+"/keep", secrets[auth.RoleOperator],
		`{"until": "forever", "reason": "a demo on Friday"}`); status != http.StatusOK {
		t.Fatalf("keep: %d %s", status, body)
	}

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
	replace := amFiles(t, "http://"+exporterAddr, credentials, sink.Addr)
	for pattern, with := range map[string]string{
		`group_wait: 30s`: "group_wait: 1s", `group_interval: 5m`: "group_interval: 2s", `repeat_interval: 96h`: "repeat_interval: 3s",
		`repeat_interval: 4h`: "repeat_interval: 3s",
		// People: the stale instances of a group are told together, once.
		`group_wait: 1m`: "group_wait: 5s", `group_interval: 10m`: "group_interval: 10m",
	} {
		replace[pattern] = with
	}
	amConfig := write(t, filepath.Join(dir, "alertmanager.yml"), shortened(t, "alerts/alertmanager.yml", replace))
	testenv.Start(t, nil, alertmanager, "--config.file="+amConfig, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	testenv.Start(t, nil, prometheus, "--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	testenv.WaitHTTP(t, "http://"+amAddr+"/-/ready", 30*time.Second)
	testenv.WaitHTTP(t, "http://"+promAddr+"/-/ready", 30*time.Second)
	prom := promAPI{t: t, base: "http://" + promAddr}

	// Stale, with the earliest automatic cleanup listed.
	var rows map[string]api.StaleContainer
	eventually(t, "the preview instances listed stale", 30*time.Second, func() bool {
		rows = listStale(t, "http://"+exporterAddr, secrets[auth.RoleViewer])
		return rows[previewA].AutomaticCleanupFrom != "" && rows[previewB].AutomaticCleanupFrom != ""
	})
	staleAt := time.Now()
	if kept := rows[keptID]; kept.Stale || kept.KeptUntil != api.Forever || kept.KeptBy != "test-operator" || kept.KeepReason != "a demo on Friday" {
		t.Errorf("the kept instance listed as %+v", kept)
	}
	eligible := map[string]string{}
	for _, id := range []string{previewA, previewB} {
		at, err := time.Parse(time.RFC3339, rows[id].AutomaticCleanupFrom)
		if err != nil {
			t.Fatal(err)
		}
		eligible[id] = at.UTC().Format("2006-01-02 15:04 MST")
	}

	// People are told: one message per project and stage.
	messages := map[string]testenv.Mail{}
	eventually(t, "an email for shop/preview and one for shop/production", 60*time.Second, func() bool {
		for _, m := range sink.Mail() {
			for _, stage := range []string{"preview", "production"} {
				if _, seen := messages[stage]; !seen && strings.Contains(m.Subject, "in shop/"+stage) {
					messages[stage] = m
				}
			}
		}
		return len(messages) == 2
	})
	told := time.Now()
	if !exists(t, docker, previewACID) || !exists(t, docker, previewBCID) {
		t.Fatal("a preview instance was removed before people were told")
	}
	preview, production := messages["preview"], messages["production"]
	if !strings.Contains(preview.Subject, "2 stale containers in shop/preview") || !strings.Contains(production.Subject, "1 stale container in shop/production") {
		t.Errorf("subjects: %q, %q", preview.Subject, production.Subject)
	}
	for id, m := range map[string]testenv.Mail{previewA: preview, previewB: preview, warnID: production} {
		if n := strings.Count(m.Text, "instance "+id+","); n != 1 {
			t.Errorf("instance %s listed %d times in its group's email, want once:\n%s", id, n, m.Text)
		}
	}
	for _, id := range []string{previewA, previewB} {
		if want := "removed automatically at " + eligible[id] + " unless kept: stale-exporter keep " + id; !strings.Contains(preview.Text, want) {
			t.Errorf("the preview email does not say %q:\n%s", want, preview.Text)
		}
	}
	for _, m := range sink.Mail() {
		if strings.Contains(m.Text, keptID) {
			t.Errorf("people were told about the kept instance:\n%s", m.Text)
		}
	}
	if !strings.Contains(production.Text, "not cleaned automatically") || strings.Contains(production.Text, "removed automatically") {
		t.Errorf("the production email:\n%s", production.Text)
	}

	// Removal only after the grace.
	eventually(t, "the preview instances' containers removed and their rows deleted", 90*time.Second, func() bool {
		return !exists(t, docker, previewACID) && !exists(t, docker, previewBCID) &&
			db.Count(t, "SELECT count(*) FROM instances WHERE id IN ($1, $2)", previewA, previewB) == 0
	})
	removed := time.Now()
	for _, id := range []string{previewA, previewB} {
		var finished time.Time
		var trigger string
		if err := db.Pool.QueryRow(context.Background(), `SELECT finished_at, trigger FROM cleanup_jobs
			WHERE instance_id = $1 AND result = 'removed'`, id).Scan(&finished, &trigger); err != nil {
			t.Fatalf("the removal of %s: %v", id, err)
		}
		at, _ := time.Parse(time.RFC3339, rows[id].AutomaticCleanupFrom)
		if trigger != "webhook" || finished.Before(at) {
			t.Errorf("instance %s removed at %s by %s, before its grace ended at %s", id, finished.Format(time.RFC3339), trigger, at.Format(time.RFC3339))
		}
	}
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE result = 'skipped' AND reason_code = 'grace'"); n != 0 {
		t.Errorf("%d webhook cleanups asked before the grace: the rule must not ask early", n)
	}
	t.Logf("stale (listed) %s after creation; told by email %s later; removed %s after that (grace %s)",
		staleAt.Sub(created).Round(time.Second), told.Sub(staleAt).Round(time.Second), removed.Sub(told).Round(time.Second), grace)

	// Several group and repeat intervals later, still one warning per alert
	// occurrence: StaleContainer for each, StaleContainerCleanup for the
	// removed ones.
	time.Sleep(8 * time.Second)
	for id, want := range map[string]int{previewA: 2, previewB: 2, warnID: 1} {
		if n := db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", id); n != want {
			t.Errorf("instance %s: %d warnings after repeats, want %d", id, n, want)
		}
	}
	if !exists(t, docker, keptCID) || db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1", keptID) != 0 {
		t.Fatal("the kept instance was removed or got a job")
	}
	if !exists(t, docker, warnCID) || db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", warnID) != 1 ||
		db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1", warnID) != 0 {
		t.Fatal("the production instance, whose alerts ask for no cleanup, was removed or got a job")
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

// listStale reads an exporter's list of stale (and kept) instances.
func listStale(t *testing.T, base, token string) map[string]api.StaleContainer {
	t.Helper()
	status, body := call(t, http.MethodGet, base+"/api/containers/stale", token, "")
	var rows []api.StaleContainer
	if err := json.Unmarshal(body, &api.Envelope{Data: &rows}); status != http.StatusOK || err != nil {
		t.Fatalf("list: %d %s (%v)", status, body, err)
	}
	out := map[string]api.StaleContainer{}
	for _, r := range rows {
		out[r.InstanceID] = r
	}
	return out
}

// call makes one API request with a bearer token and returns its status and body.
func call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, out
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
	dash, err := dashboards.Parse(dashboards.StaleExporter)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	out := dash.Queries(dashboards.AllSelected)
	if len(out) < 8 {
		t.Fatalf("only %d dashboard queries", len(out))
	}
	return out
}

// metricValue scrapes url and answers the value of the first sample of the
// metric name (0 when it has none).
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	v, _ := sampleOf(t, url, name, "")
	return v
}

// sampleOf scrapes url and answers the first sample of the metric name
// whose line holds has, if any.
func sampleOf(t *testing.T, url, name, has string) (float64, bool) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || !strings.HasPrefix(rest, "{") && !strings.HasPrefix(rest, " ") || !strings.Contains(line, has) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("%s: %q is no sample", name, line)
		}
		return v, true
	}
	return 0, false
}
