package e2e_test

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// Memory bound stated for 200 concurrent scrapes of 1,000 instances: the
// exposition is rendered once per scan and shared, so the peak resident set
// stays far from the 832 MB measured before.
const scrapeRSSBoundMB = 150

// Clients that connect and send nothing, keep idle keep-alives, never read
// their answer, or trickle a body (with or without a token) are all let go
// within the timeouts; 200 concurrent scrapes share one rendering.
func TestHostileClients(t *testing.T) {
	testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()
	db.Exec(t, `INSERT INTO projects (name) VALUES ('load');
		INSERT INTO stages (project_id, name) SELECT id, 'preview' FROM projects WHERE name = 'load'`)
	db.Exec(t, `INSERT INTO instances (stage_id, project_id, container_id, image_tag, status)
		SELECT s.id, s.project_id, '', 'tag-' || g, 'stopped' FROM stages s, generate_series(1, 1000) g`)
	tokensFile, secrets := testenv.Tokens(t, dir, auth.RoleAlertmanager)
	secret := secrets[auth.RoleAlertmanager]
	binary := testenv.BuildExporter(t)
	addr := testenv.FreeAddr(t)
	const readTimeout, idleTimeout, writeTimeout = 2 * time.Second, 2 * time.Second, 8 * time.Second
	exporter := testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), binary,
		"--web.listen-address="+addr, "--api.tokens-file="+tokensFile,
		"--web.read-timeout="+readTimeout.String(), "--web.idle-timeout="+idleTimeout.String(),
		"--web.write-timeout="+writeTimeout.String(), "--cleanup.wait=2s", "--store.timeout=1s",
		"--web.max-requests=0", "--collector.cache-ttl=1s", "--docker.timeout=3s")
	base := "http://" + addr
	testenv.WaitHTTP(t, base+"/-/ready", 20*time.Second)
	pid := exporter.Pid()
	baseline := goroutines(t, base)

	const n = 100
	var conns []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	// Silent: connect and send nothing.
	for range n {
		dial()
	}
	// Idle keep-alive: one request answered, then nothing.
	for range n {
		c := dial()
		fmt.Fprintf(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Never reading: ask for the metrics and never read them.
	for range n {
		fmt.Fprintf(dial(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	// Trickling a body without a token: refused at once, never drained.
	unauthenticated := make([]net.Conn, 0, n)
	for range n {
		c := dial()
		fmt.Fprintf(c, "POST /api/alertmanager/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
		unauthenticated = append(unauthenticated, c)
	}
	// Trickling a body with a token: cut by the read timeout.
	for range n {
		c := dial()
		fmt.Fprintf(c, "POST /api/alertmanager/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{", secret)
	}
	peak := goroutines(t, base)
	for _, c := range unauthenticated {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unauthenticated trickle: %v %v, want 401 at once", res, err)
		}
	}
	trickle := make([]byte, 1)
	stop := time.Now().Add(readTimeout + idleTimeout + time.Second)
	for time.Now().Before(stop) {
		for _, c := range conns {
			trickle[0] = ' '
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
			_, _ = c.Write(trickle)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Every connection has been closed by the server.
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(writeTimeout))
		// EOF or a reset: closed by the server. A timeout: still open.
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
		}
		c.Close()
	}
	if open > 0 {
		t.Errorf("%d of %d hostile connections were still open after the timeouts", open, len(conns))
	}
	var after int
	deadline := time.Now().Add(10 * time.Second)
	for after = goroutines(t, base); after > baseline+10 && time.Now().Before(deadline); after = goroutines(t, base) {
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d with %d hostile connections, %d after", baseline, peak, len(conns), after)
	if after > baseline+10 {
		t.Errorf("goroutines after the hostile clients: %d, baseline %d", after, baseline)
	}

	// 200 concurrent scrapes of 1,000 instances.
	before := rssMB(t, pid, "VmRSS")
	latencies := make([]time.Duration, 200)
	var wg sync.WaitGroup
	for i := range latencies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			start := time.Now()
			res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				t.Error(err)
				return
			}
			body, err := io.ReadAll(zr)
			latencies[i] = time.Since(start)
			if err != nil || !strings.Contains(string(body), `image_tag="tag-1000"`) {
				t.Errorf("scrape: %v, body lacks the 1,000th instance", err)
			}
		}()
	}
	wg.Wait()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	peakRSS := rssMB(t, pid, "VmHWM")
	t.Logf("200 concurrent scrapes of 1,000 instances: p50 %s, p99 %s; RSS %d MB before, peak %d MB (bound %d MB)",
		latencies[100].Round(time.Millisecond), latencies[197].Round(time.Millisecond), before, peakRSS, scrapeRSSBoundMB)
	if peakRSS > scrapeRSSBoundMB {
		t.Errorf("peak RSS %d MB over the stated bound of %d MB", peakRSS, scrapeRSSBoundMB)
	}
}

// goroutines reads go_goroutines from the exporter's metrics, after the
// cache TTL so that a fresh scan renders them anew.
func goroutines(t *testing.T, base string) int {
	t.Helper()
	time.Sleep(1100 * time.Millisecond)
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}

// rssMB reads a memory figure (VmRSS, VmHWM) of a process, in MB.
func rssMB(t *testing.T, pid int, field string) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
