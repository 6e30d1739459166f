// Command load runs a simulated fleet: M simulated Docker engines of N
// containers each, whose states change at a set rate, one stale-exporter
// process per engine, and one PostgreSQL cluster of its own (with
// pg_stat_statements), scraped as Prometheus would. It prints, for each
// fleet size, with the events path off (every scan lists the engine and
// reads every row, and writes last_alive_at of every running instance)
// and on (the view, the store's feed, rationed writes), side by side:
// PostgreSQL statements/s and rows written/s, last_alive_at writes an
// hour, CPU seconds an hour and RSS per exporter, scrape p50/p99, and
// Docker calls a minute per exporter; then the extrapolation to 100 hosts.
//
//	go run ./internal/fleet/load -binary ./stale-exporter -engines 10,20
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/fleet"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

type options struct {
	binary         string
	engines        []int
	instances      int
	warmup, window time.Duration
	scrape, churn  time.Duration
	runningShare   float64
	verbose        bool
}

func main() {
	var o options
	var engines string
	flag.StringVar(&o.binary, "binary", "./stale-exporter", "the stale-exporter binary")
	flag.StringVar(&engines, "engines", "10,20", "fleet sizes (engines, one exporter each)")
	flag.IntVar(&o.instances, "instances", 1000, "instances (containers) per engine")
	flag.DurationVar(&o.warmup, "warmup", 30*time.Second, "time before measuring")
	flag.DurationVar(&o.window, "window", 2*time.Minute, "time measured")
	flag.DurationVar(&o.scrape, "scrape", 15*time.Second, "scrape interval of each exporter")
	flag.DurationVar(&o.churn, "churn", 10*time.Second, "one container state change per engine this often")
	flag.Float64Var(&o.runningShare, "running", 0.8, "share of containers running")
	flag.BoolVar(&o.verbose, "v", false, "keep the exporters' logs on stderr")
	flag.Parse()
	for _, s := range strings.Split(engines, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail("-engines %q: give positive numbers", engines)
		}
		o.engines = append(o.engines, n)
	}
	if err := run(o); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "load: "+format+"\n", args...)
	os.Exit(1)
}

// row is one measured configuration.
type row struct {
	mode                    string
	engines, instances      int
	statements, rowsWritten float64 // a second
	aliveWritesHour         float64
	cpuHour, rssMiB         float64 // per exporter
	p50, p99                time.Duration
	dockerCallsMin          float64 // per exporter
	listsMin                float64 // per exporter
}

func run(o options) error {
	binary, err := filepath.Abs(o.binary)
	if err != nil {
		return err
	}
	o.binary = binary
	cl, err := startCluster()
	if err != nil {
		return err
	}
	defer cl.stop()
	var rows []row
	for _, m := range o.engines {
		for _, mode := range []string{"off", "on"} {
			fmt.Fprintf(os.Stderr, "load: %d engines x %d instances, events %s ...\n", m, o.instances, mode)
			r, err := measure(o, cl, m, mode)
			if err != nil {
				return fmt.Errorf("%d engines, events %s: %w", m, mode, err)
			}
			rows = append(rows, r)
		}
	}
	report(os.Stdout, o, rows)
	return nil
}

// cluster is the load's own PostgreSQL.
type cluster struct {
	bin, dir, sock string
	port           int
}

func startCluster() (*cluster, error) {
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		return nil, fmt.Errorf("no PostgreSQL server binaries under /usr/lib/postgresql")
	}
	root, err := os.MkdirTemp("", "stale-fleet-pg")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	c := &cluster{bin: filepath.Dir(initdbs[len(initdbs)-1]), dir: filepath.Join(root, "data"), sock: root, port: port}
	if err := runCmd("chown", "postgres", root); err != nil {
		return nil, err
	}
	if err := runCmd("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "initdb"), "-D", c.dir, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		return nil, err
	}
	if err := runCmd("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-w", "-l", filepath.Join(root, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses='' -c shared_preload_libraries=pg_stat_statements -c max_connections=300", port, root), "start"); err != nil {
		return nil, err
	}
	if err := c.exec("postgres", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) stop() {
	_ = runCmd("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-m", "fast", "-w", "stop")
	_ = os.RemoveAll(c.sock)
}

func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", c.sock, c.port, db)
}

func (c *cluster) exec(db, sql string, args ...any) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.dsn(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

func runCmd(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	return nil
}

// dbStats are the counters of one database the load reads.
type dbStats struct {
	statements, rowsWritten, aliveWrites float64
}

func (c *cluster) stats(db string) (dbStats, error) {
	ctx := context.Background()
	var s dbStats
	// pg_stat_statements lives where its extension was made.
	admin, err := pgx.Connect(ctx, c.dsn("postgres"))
	if err != nil {
		return s, err
	}
	defer admin.Close(ctx)
	if err := admin.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)`, db).Scan(&s.statements); err != nil {
		return s, fmt.Errorf("pg_stat_statements: %w", err)
	}
	if err := admin.QueryRow(ctx, `SELECT (tup_inserted + tup_updated + tup_deleted)::float8 FROM pg_stat_database WHERE datname = $1`, db).Scan(&s.rowsWritten); err != nil {
		return s, err
	}
	conn, err := pgx.Connect(ctx, c.dsn(db))
	if err != nil {
		return s, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT coalesce(n_tup_upd, 0)::float8 FROM pg_stat_user_tables WHERE relname = 'instances'`).Scan(&s.aliveWrites)
	return s, err
}

// exporter is one running stale-exporter process.
type exporter struct {
	cmd  *exec.Cmd
	addr string
}

func measure(o options, cl *cluster, m int, mode string) (row, error) {
	r := row{mode: mode, engines: m, instances: o.instances}
	db := fmt.Sprintf("fleet_%d_%s", m, mode)
	if err := cl.exec("postgres", "DROP DATABASE IF EXISTS "+db); err != nil {
		return r, err
	}
	if err := cl.exec("postgres", "CREATE DATABASE "+db); err != nil {
		return r, err
	}
	defer func() { _ = cl.exec("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, cl.dsn(db))
	if err != nil {
		return r, err
	}
	err = st.Migrate(ctx)
	st.Close()
	if err != nil {
		return r, err
	}
	dir, err := os.MkdirTemp("", "stale-fleet")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	sims, err := seed(ctx, o, cl.dsn(db), dir, m)
	if err != nil {
		return r, err
	}
	defer func() {
		for _, s := range sims {
			_ = s.Close()
		}
	}()
	for _, s := range sims {
		go s.Churn(ctx, o.churn)
	}
	exporters, err := startExporters(o, cl.dsn(db), dir, m, mode)
	if err != nil {
		return r, err
	}
	defer stopExporters(exporters)
	if err := waitReady(exporters, 2*time.Minute); err != nil {
		return r, err
	}
	var latencies []time.Duration
	var mu sync.Mutex
	scrapeCtx, stopScrapes := context.WithCancel(ctx)
	defer stopScrapes()
	measuring := make(chan struct{})
	var wg sync.WaitGroup
	for i, e := range exporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Staggered, as Prometheus spreads its targets.
			select {
			case <-time.After(time.Duration(i) * o.scrape / time.Duration(len(exporters))):
			case <-scrapeCtx.Done():
				return
			}
			t := time.NewTicker(o.scrape)
			defer t.Stop()
			for {
				took, err := scrape(e.addr)
				select {
				case <-measuring:
					if err == nil {
						mu.Lock()
						latencies = append(latencies, took)
						mu.Unlock()
					}
				default:
				}
				select {
				case <-scrapeCtx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	time.Sleep(o.warmup)
	before, err := cl.stats(db)
	if err != nil {
		return r, err
	}
	cpuBefore := cpu(exporters)
	callsBefore, listsBefore := dockerCalls(sims)
	close(measuring)
	start := time.Now()
	time.Sleep(o.window)
	elapsed := time.Since(start)
	after, err := cl.stats(db)
	if err != nil {
		return r, err
	}
	cpuAfter := cpu(exporters)
	callsAfter, listsAfter := dockerCalls(sims)
	stopScrapes()
	wg.Wait()

	secs := elapsed.Seconds()
	n := float64(m)
	r.statements = (after.statements - before.statements) / secs
	r.rowsWritten = (after.rowsWritten - before.rowsWritten) / secs
	r.aliveWritesHour = (after.aliveWrites - before.aliveWrites) / secs * 3600
	r.cpuHour = (cpuAfter - cpuBefore) / n / secs * 3600
	r.rssMiB = rss(exporters) / n
	r.dockerCallsMin = float64(callsAfter-callsBefore) / n / secs * 60
	r.listsMin = float64(listsAfter-listsBefore) / n / secs * 60
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if len(latencies) > 0 {
		r.p50, r.p99 = latencies[len(latencies)/2], latencies[min(len(latencies)-1, len(latencies)*99/100)]
	}
	return r, nil
}

// seed makes m engines of o.instances containers each, serving on unix
// sockets in dir, and their instance rows, owned by their engines.
func seed(ctx context.Context, o options, dsn, dir string, m int) ([]*fleet.Engine, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var stage, project string
	if err := conn.QueryRow(ctx, `WITH p AS (INSERT INTO projects (name) VALUES ('fleet') RETURNING id)
		INSERT INTO stages (project_id, name) SELECT id, 'preview' FROM p RETURNING id::text, project_id::text`).Scan(&stage, &project); err != nil {
		return nil, fmt.Errorf("seed project: %w", err)
	}
	long := time.Now().Add(-30 * 24 * time.Hour)
	var sims []*fleet.Engine
	for e := range m {
		host := fmt.Sprintf("sim-%02d", e+1)
		sim := fleet.NewEngine(host)
		var rows [][]any
		for i := range o.instances {
			id, cid := uuid(), fleet.ID()
			state, status := "exited", stale.StatusStopped
			c := fleet.Container{ID: cid, Name: fmt.Sprintf("%s-%d", host, i), Image: "web:pr-" + strconv.Itoa(i), Labels: map[string]string{stale.LabelInstanceID: id},
				Created: long, StartedAt: long, FinishedAt: long.Add(time.Hour)}
			if float64(i) < o.runningShare*float64(o.instances) {
				state, status, c.FinishedAt = "running", stale.StatusRunning, time.Time{}
				c.StartedAt = time.Now().Add(-time.Hour)
			}
			c.State = state
			sim.Add(c)
			rows = append(rows, []any{id, stage, project, cid, "pr-" + strconv.Itoa(i), status, long, host})
		}
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"instances"},
			[]string{"id", "stage_id", "project_id", "container_id", "image_tag", "status", "created_at", "docker_host"}, pgx.CopyFromRows(rows)); err != nil {
			return nil, fmt.Errorf("seed instances: %w", err)
		}
		if err := sim.Serve(filepath.Join(dir, host+".sock")); err != nil {
			return nil, err
		}
		sims = append(sims, sim)
	}
	return sims, nil
}

func uuid() string {
	b := fleet.ID()[:32]
	return b[:8] + "-" + b[8:12] + "-4" + b[13:16] + "-8" + b[17:20] + "-" + b[20:32]
}

func startExporters(o options, dsn, dir string, m int, mode string) ([]*exporter, error) {
	var out []*exporter
	for e := range m {
		host := fmt.Sprintf("sim-%02d", e+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return out, err
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		args := []string{"--web.listen-address=" + addr, "--docker.host=unix://" + filepath.Join(dir, host+".sock"), "--docker.host-name=" + host,
			"--docker.claim-unowned=false", "--log.level=warn"}
		if mode == "off" {
			args = append(args, "--no-docker.events", "--no-store.changes", "--store.alive-write-interval=0s")
		}
		cmd := exec.Command(o.binary, args...)
		cmd.Env = append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+dsn)
		cmd.Stdout = io.Discard
		cmd.Stderr = io.Discard
		if o.verbose {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			return out, err
		}
		out = append(out, &exporter{cmd: cmd, addr: addr})
	}
	return out, nil
}

func stopExporters(exporters []*exporter) {
	for _, e := range exporters {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, e := range exporters {
		done := make(chan struct{})
		go func() { _ = e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = e.cmd.Process.Kill()
			<-done
		}
	}
}

func waitReady(exporters []*exporter, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, e := range exporters {
		for {
			res, err := http.Get("http://" + e.addr + "/-/ready")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("exporter at %s not ready within %s", e.addr, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

var client = &http.Client{Timeout: 30 * time.Second}

// scrape fetches /metrics once and says how long it took.
func scrape(addr string) (time.Duration, error) {
	start := time.Now()
	res, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: %s", addr, res.Status)
	}
	return time.Since(start), nil
}

// cpu is the CPU seconds the exporters used so far.
func cpu(exporters []*exporter) float64 {
	total := 0.0
	for _, e := range exporters {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name in parentheses: utime is the 14th
		// field of the line, stime the 15th.
		fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / 100 // USER_HZ
	}
	return total
}

// rss is the exporters' resident memory in MiB, summed.
func rss(exporters []*exporter) float64 {
	total := 0.0
	for _, e := range exporters {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if kb, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), 64)
				total += v / 1024
			}
		}
		f.Close()
	}
	return total
}

// dockerCalls are the calls the engines answered so far, and the lists
// among them.
func dockerCalls(sims []*fleet.Engine) (calls, lists int64) {
	for _, s := range sims {
		for endpoint, n := range s.Calls() {
			if endpoint == "events" {
				continue // a stream, opened once
			}
			calls += n
			if endpoint == "list" {
				lists += n
			}
		}
	}
	return calls, lists
}

func report(w io.Writer, o options, rows []row) {
	fmt.Fprintf(w, "\nsimulated fleet: %d instances an engine (%.0f%% running, one state change an engine every %s), scraped every %s, measured %s after %s\n\n",
		o.instances, 100*o.runningShare, o.churn, o.scrape, o.window, o.warmup)
	fmt.Fprintln(w, "| events | engines | SQL statements/s | rows written/s | last_alive_at writes/h | CPU s/h per exporter | RSS MiB per exporter | scrape p50 | scrape p99 | Docker calls/min per exporter | lists/min per exporter |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %.1f | %.1f | %.0f | %.1f | %.1f | %s | %s | %.1f | %.2f |\n", r.mode, r.engines, r.statements, r.rowsWritten,
			r.aliveWritesHour, r.cpuHour, r.rssMiB, r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.dockerCallsMin, r.listsMin)
	}
	fmt.Fprintln(w, "\nextrapolated to 100 engines (per exporter figures of the largest fleet, times 100):")
	for _, mode := range []string{"off", "on"} {
		var last *row
		for i := range rows {
			if rows[i].mode == mode {
				last = &rows[i]
			}
		}
		if last == nil {
			continue
		}
		k := 100 / float64(last.engines)
		fmt.Fprintf(w, "- events %s: %.0f SQL statements/s, %.0f rows written/s, %.0f last_alive_at writes/h, %.1f CPU cores of exporters\n",
			mode, last.statements*k, last.rowsWritten*k, last.aliveWritesHour*k, last.cpuHour*100/3600)
	}
}
