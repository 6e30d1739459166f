package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// host is one Docker engine with its exporter.
type host struct {
	name     string
	engine   *testenv.Engine
	addr     string
	exporter *testenv.Process
}

// Three engines, three exporters on one PostgreSQL, one Prometheus scraping
// them all and two clustered Alertmanagers whose webhook deliveries all land
// on host A's exporter.
func TestSeveralDockerHosts(t *testing.T) {
	started := time.Now()
	prometheus := testenv.Binary(t, "prometheus")
	alertmanager := testenv.Binary(t, "prometheus-alertmanager", "alertmanager")
	testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()
	hosts := map[string]*host{}
	for _, name := range []string{"a", "b", "c"} {
		hosts[name] = &host{name: "host-" + name, engine: testenv.StartEngine(t, "mh"+name), addr: testenv.FreeAddr(t)}
	}
	// B's engine behind a front that counts the calls its exporter makes.
	var lists, inspects atomic.Int64
	bFront := testenv.DockerProxyTo(t, hosts["b"].engine.Socket, func(_ http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			lists.Add(1)
		case strings.HasSuffix(r.URL.Path, "/json") && strings.Contains(r.URL.Path, "/containers/"):
			inspects.Add(1)
		}
		return false
	})

	old := time.Now().Add(-48 * time.Hour)
	instance := func(h *host, stage string, run bool) (string, string) {
		id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: stage, ImageTag: h.name, CreatedAt: old})
		// Running containers come back with their engine, as production ones do.
		cid := testenv.NewContainer(t, h.engine.Client, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id},
			Start: run, RestartAlways: run})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
		return id, cid
	}
	aRunID, aRunCID := instance(hosts["a"], "preview", true)
	aProdID, aProdCID := instance(hosts["a"], "production", false) // stale, warn only
	bStaleID, bStaleCID := instance(hosts["b"], "preview", false)  // stale, cleaned by B
	bRunID, _ := instance(hosts["b"], "preview", true)
	cRunID, _ := instance(hosts["c"], "preview", true)
	cStaleID, cStaleCID := instance(hosts["c"], "preview", false) // stale; C's engine goes away
	// The same instance label on two engines: the row names A's container;
	// C has another container with the same label.
	dupID, dupCID := instance(hosts["a"], "preview", true)
	dupOnC := testenv.NewContainer(t, hosts["c"].engine.Client, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: dupID}})

	tokensFile, tokens := testenv.Tokens(t, dir, auth.RoleAlertmanager, auth.RoleOperator)
	secret, operator := tokens[auth.RoleAlertmanager], tokens[auth.RoleOperator]
	credentials := write(t, filepath.Join(dir, "am-token"), secret)
	binary := testenv.BuildExporter(t)
	env := append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN)
	startExporter := func(h *host, dockerHost string) {
		// Several hosts: nobody judges what no engine has claimed.
		h.exporter = testenv.Start(t, env, binary, "--web.listen-address="+h.addr, "--api.tokens-file="+tokensFile,
			"--docker.host="+dockerHost, "--docker.host-name="+h.name, "--docker.claim-unowned=false",
			"--stale.threshold="+threshold.String(), "--collector.scan-interval=1s", "--collector.cache-ttl=500ms", "--cleanup.grace=0s",
			"--docker.timeout=2s")
		testenv.WaitHTTP(t, "http://"+h.addr+"/-/ready", 30*time.Second)
	}
	startExporter(hosts["a"], hosts["a"].engine.Host)
	startExporter(hosts["b"], bFront)
	startExporter(hosts["c"], hosts["c"].engine.Host)
	owner := func(id string) string {
		var h *string
		_ = db.Pool.QueryRow(context.Background(), "SELECT docker_host FROM instances WHERE id = $1", id).Scan(&h)
		if h == nil {
			return ""
		}
		return *h
	}
	eventually(t, "every instance owned by the engine that runs its container", 30*time.Second, func() bool {
		return owner(aRunID) == "host-a" && owner(aProdID) == "host-a" && owner(bStaleID) == "host-b" &&
			owner(bRunID) == "host-b" && owner(cRunID) == "host-c" && owner(cStaleID) == "host-c" && owner(dupID) == "host-a"
	})

	// Steady state on B: its view of the engine, kept by events, answers
	// the scans (one a second): no list, no inspect of a container known.
	time.Sleep(2 * time.Second)
	l0, i0 := lists.Load(), inspects.Load()
	scans0 := metricValue(t, "http://"+hosts["b"].addr+"/metrics", "stale_exporter_last_scan_timestamp_seconds")
	time.Sleep(10 * time.Second)
	bLists, bInspects := lists.Load()-l0, inspects.Load()-i0
	scanned := metricValue(t, "http://"+hosts["b"].addr+"/metrics", "stale_exporter_last_scan_timestamp_seconds") - scans0
	t.Logf("host B's exporter, 10 s of steady state: %d container lists, %d inspects, last scan %.0fs later", bLists, bInspects, scanned)
	if bLists != 0 || bInspects != 0 || scanned < 5 {
		t.Errorf("host B: %d lists and %d inspects in 10 s, scans %.0fs apart; want scans by the view, no list and no inspect", bLists, bInspects, scanned)
	}

	// C's engine goes away: C's instances are judged by nobody else.
	hosts["c"].engine.Stop()

	promDir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(promDir, "stale-exporter.rules.yml"), shortened(t, "alerts/stale-exporter.rules.yml",
		map[string]string{`for: \d+m`: "for: 3s"}))
	amAddrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t)}
	promAddr := testenv.FreeAddr(t)
	promConfig := write(t, filepath.Join(promDir, "prometheus.yml"), shortened(t, "alerts/prometheus.yml", map[string]string{
		`scrape_interval: 30s`:     "scrape_interval: 1s",
		`evaluation_interval: 30s`: "evaluation_interval: 1s",
		`\[stale-exporter:9817\]`:  "[" + hosts["a"].addr + ", " + hosts["b"].addr + ", " + hosts["c"].addr + "]",
		`\[alertmanager:9093\]`:    "[" + amAddrs[0] + ", " + amAddrs[1] + "]",
		`localhost:9090`:           promAddr,
	}))
	replace := amFiles(t, "http://"+hosts["a"].addr, credentials, testenv.StartSMTPSink(t).Addr)
	for pattern, with := range map[string]string{`group_wait: 30s`: "group_wait: 1s", `group_interval: 5m`: "group_interval: 2s",
		`repeat_interval: 96h`: "repeat_interval: 3s", `repeat_interval: 4h`: "repeat_interval: 3s"} {
		replace[pattern] = with
	}
	amConfig := write(t, filepath.Join(dir, "alertmanager.yml"), shortened(t, "alerts/alertmanager.yml", replace))
	gossip := []string{testenv.FreeAddr(t), testenv.FreeAddr(t)}
	for i := range amAddrs {
		testenv.Start(t, nil, alertmanager, "--config.file="+amConfig, "--storage.path="+filepath.Join(dir, fmt.Sprint("am", i)),
			"--web.listen-address="+amAddrs[i], "--cluster.listen-address="+gossip[i], "--cluster.peer="+gossip[1-i],
			"--cluster.advertise-address="+gossip[i])
	}
	testenv.Start(t, nil, prometheus, "--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	for _, addr := range append(amAddrs, promAddr) {
		testenv.WaitHTTP(t, "http://"+addr+"/-/ready", 30*time.Second)
	}
	prom := promAPI{t: t, base: "http://" + promAddr}

	// B's stale preview instance is removed by B's exporter, though every
	// delivery lands on A's.
	eventually(t, "B's stale container removed and its row deleted", 90*time.Second, func() bool {
		_, err := hosts["b"].engine.Client.ContainerInspect(context.Background(), bStaleCID, client.ContainerInspectOptions{})
		return err != nil && db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", bStaleID) == 0
	})
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND docker_host = 'host-b' AND result = 'removed'", bStaleID); n != 1 {
		t.Fatalf("removals of B's instance by host-b's jobs: %d, want 1", n)
	}
	eventually(t, "StaleExporterDockerDown firing for host-c", 60*time.Second, func() bool {
		return len(prom.query(`ALERTS{alertname="StaleExporterDockerDown", alertstate="firing", docker_host="host-c"}`)) == 1
	})
	eventually(t, "a warning for A's production instance", 30*time.Second, func() bool {
		return db.Count(t, "SELECT count(*) FROM event_log WHERE severity = 'warning' AND instance_id = $1", aProdID) == 1
	})
	// Two Alertmanagers, several repeat intervals: one warning and one
	// removal per occurrence.
	time.Sleep(8 * time.Second)
	// B's: StaleContainer and StaleContainerCleanup, one warning each.
	for id, c := range map[string]struct {
		name string
		want int
	}{bStaleID: {"B's stale", 2}, aProdID: {"A's production", 1}} {
		if n := db.Count(t, "SELECT count(*) FROM event_log WHERE instance_id = $1 AND severity = 'warning'", id); n != c.want {
			t.Errorf("%s instance: %d warnings from two Alertmanagers, want %d", c.name, n, c.want)
		}
	}
	if n := db.Count(t, "SELECT count(*) FROM event_log WHERE message LIKE 'removed %'"); n != 1 {
		t.Errorf("removal events: %d, want 1 (B's)", n)
	}
	// Nobody judged or removed C's instances while its engine was away.
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND state = 'done' AND result = 'removed'", cStaleID); n != 0 {
		t.Fatal("C's instance was removed while C's engine was away")
	}
	if got := prom.query(`instance_stale{docker_host="host-c"} == 1 and on (instance) stale_exporter_scan_success == 1`); len(got) != 0 {
		t.Errorf("C's instances judged stale by an exporter that scans: %v", got)
	}
	for _, c := range []struct {
		h  *host
		id string
	}{{hosts["a"], aRunCID}, {hosts["a"], aProdCID}, {hosts["a"], dupCID}} {
		if !exists(t, c.h.engine.Client, c.id) {
			t.Errorf("container %s on %s was removed", c.id, c.h.name)
		}
	}

	// C's exporter is down too: a cleanup asked of A's exporter waits for it.
	hosts["c"].exporter.Stop()
	req, _ := http.NewRequest(http.MethodPost, "http://"+hosts["a"].addr+"/api/containers/stale/"+cStaleID+"/cleanup", nil)
	req.Header.Set("Authorization", "Bearer "+operator)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted ||
		db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND docker_host = 'host-c' AND state = 'pending'", cStaleID) != 1 {
		t.Fatalf("cleanup of C's instance asked of A while C is down: %d, want 202 and a pending job for host-c", res.StatusCode)
	}

	// C returns: its stale instance is cleaned by C, its running one kept,
	// and the container carrying the same label as A's instance is untouched.
	hosts["c"].engine.Start()
	startExporter(hosts["c"], hosts["c"].engine.Host)
	eventually(t, "C's stale container removed after C's engine returned", 90*time.Second, func() bool {
		return db.Count(t, "SELECT count(*) FROM instances WHERE id = $1", cStaleID) == 0
	})
	if exists(t, hosts["c"].engine.Client, cStaleCID) || !exists(t, hosts["c"].engine.Client, dupOnC) {
		t.Fatal("after C returned: its stale container is still there, or the container with A's instance label was removed")
	}
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE instance_id = $1 AND result = 'removed' AND docker_host = 'host-c'", cStaleID); n != 1 {
		t.Fatalf("removals of C's instance: %d, want 1, by host-c", n)
	}
	if owner(dupID) != "host-a" || db.Count(t, "SELECT count(*) FROM instances WHERE id = ANY($1::uuid[])", []string{aRunID, aProdID, bRunID, cRunID, dupID}) != 5 {
		t.Fatal("an instance that is not stale was removed, or ownership of A's instance changed")
	}
	t.Logf("several Docker hosts test took %s", time.Since(started).Round(time.Second))
}
