package scan_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

const (
	benchContainers = 1000
	benchRunning    = 100
)

// BenchmarkScan measures a warm scan against 1,000 real containers (100 of
// them running) and 1,000 or 10,000 instance rows, the rest missing from
// Docker. Each size also measures the floor: one bare ContainerList plus the
// store's read, done one after the other; scan/floor is reported.
func BenchmarkScan(b *testing.B) {
	docker := testenv.Docker(b)
	engine := dockertest.Local(b)
	ids := createBenchContainers(b, docker)
	for _, instances := range []int{1000, 10000} {
		db := benchStore(b, ids, instances)

		var floor time.Duration
		b.Run(fmt.Sprintf("floor/instances=%d", instances), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if _, err := docker.ContainerList(ctx, client.ContainerListOptions{
					All: true, Filters: make(client.Filters).Add("label", stale.LabelInstanceID),
				}); err != nil {
					b.Fatal(err)
				}
				if _, err := db.Store.ReadInventory(ctx, testenv.EngineName); err != nil {
					b.Fatal(err)
				}
			}
			floor = b.Elapsed() / time.Duration(b.N)
		})
		b.Run(fmt.Sprintf("scan/instances=%d", instances), func(b *testing.B) {
			scanner := scan.NewScanner(engine, db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName, Unowned: stale.UnownedOn, Threshold: time.Hour}, MaxSnapshotAge: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			warm(b, scanner)
			b.ResetTimer()
			for b.Loop() {
				if r := scanner.Rescan(context.Background()); !r.Success {
					b.Fatal(r.Err)
				}
			}
			perScan := b.Elapsed() / time.Duration(b.N)
			if floor > 0 {
				b.ReportMetric(float64(perScan)/float64(floor), "x-floor")
			}
			series, err := testutil.GatherAndCount(registry(collector.New(scanner.Result(context.Background()), testenv.EngineName)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(series), "series")
			b.ReportMetric(float64(series-2*instances), "series-beyond-2/instance")
		})
	}
}

// benchStore is a store of instances rows, the first naming the
// containers of ids, the rest containers Docker does not have.
func benchStore(b *testing.B, ids []string, instances int) *storetest.DB {
	b.Helper()
	db := storetest.New(b)
	db.Exec(b, `INSERT INTO projects (name) VALUES ('bench');
		INSERT INTO stages (project_id, name) SELECT id, 'preview' FROM projects`)
	db.Exec(b, `INSERT INTO instances (stage_id, project_id, container_id, image_tag, status, created_at)
		SELECT s.id, s.project_id, lpad(to_hex(g), 64, 'f'), 'pr-' || g, 'stopped', now() - interval '30 days'
		FROM stages s, generate_series(1, $1) g`, instances)
	db.Exec(b, `UPDATE instances SET container_id = c.id
		FROM (SELECT unnest($1::text[]) AS id, generate_series(1, $2) AS n) c
		WHERE instances.container_id = lpad(to_hex(c.n), 64, 'f')`, ids, len(ids))
	return db
}

// warm scans until every container is known: FinishedAt cached, and every
// missing row looked up once (at most 100 a scan) and its 404 cached.
func warm(b *testing.B, scanner *scan.Scanner) {
	b.Helper()
	for range 200 {
		r := scanner.Rescan(context.Background())
		if !r.Success {
			b.Fatal(r.Err)
		}
		unknown := 0
		for _, o := range r.Snapshot.Observations {
			if o.Container.Unknown {
				unknown++
			}
		}
		if unknown == 0 {
			return
		}
	}
	b.Fatal("containers still unknown after 200 scans")
}

// BenchmarkScanThreeHosts measures three exporters of three Docker hosts
// scanning at once against one PostgreSQL, 300 instances each: each reads
// only its own rows (the docker_host index). The engine is this machine's
// for all three (its 1,000 labelled containers stand for each host's).
func BenchmarkScanThreeHosts(b *testing.B) {
	docker := testenv.Docker(b)
	engine := dockertest.Local(b)
	ids := createBenchContainers(b, docker)
	db := storetest.New(b)
	db.Exec(b, `INSERT INTO projects (name) VALUES ('bench');
		INSERT INTO stages (project_id, name) SELECT id, 'preview' FROM projects`)
	hosts := []string{"host-a", "host-b", "host-c"}
	for i, h := range hosts {
		db.Exec(b, `INSERT INTO instances (stage_id, project_id, container_id, image_tag, status, created_at, docker_host)
			SELECT s.id, s.project_id, c.id, 'pr-' || c.n, 'stopped', now() - interval '30 days', $2
			FROM stages s, (SELECT unnest($1::text[]) AS id, generate_series(1, 300) AS n) c`,
			ids[i*300:(i+1)*300], h)
	}
	scanners := make([]*scan.Scanner, len(hosts))
	for i, h := range hosts {
		scanners[i] = scan.NewScanner(engine, db.Store, scan.Config{Config: stale.Config{Host: h, Threshold: time.Hour}, MaxSnapshotAge: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		warm(b, scanners[i])
		if r := scanners[i].Rescan(context.Background()); len(r.Snapshot.Observations) != 300 {
			b.Fatalf("%s sees %d instances, want its 300", h, len(r.Snapshot.Observations))
		}
	}
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for _, s := range scanners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := s.Rescan(context.Background()); !r.Success {
					b.Error(r.Err)
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/3-concurrent-scans")
}

func registry(c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return reg
}

func createBenchContainers(b *testing.B, docker *client.Client) []string {
	b.Helper()
	image := testenv.Image(b, docker)
	ids := make([]string, benchContainers)
	errs := make(chan error, benchContainers)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	ctx := context.Background()
	for i := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{
				Config: &container.Config{Image: image, Labels: map[string]string{
					stale.LabelInstanceID: fmt.Sprintf("bench-%d", i),
				}},
				HostConfig: &container.HostConfig{NetworkMode: "none"},
			})
			if err != nil {
				errs <- err
				return
			}
			ids[i] = res.ID
			if i < benchRunning {
				if _, err := docker.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, id := range ids {
			if id == "" {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				_, _ = docker.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
			}()
		}
		wg.Wait()
	})
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("create containers: %v", err)
	}
	return ids
}

// BenchmarkMeasureStale measures what the disk measurement costs the scans
// with 100 stale containers: each stopped with 500 files (2 MiB) in its
// writable layer, every other one with 500 more in an anonymous volume. A
// new scanner measures at most 50 a scan, so scans 1 and 2 measure and scan
// 3 finds every size cached. Reported: each scan's time, the cost of one
// measurement (scan 2 minus scan 3, over 50), and the disk measured.
func BenchmarkMeasureStale(b *testing.B) {
	const staleContainers = 100
	docker := testenv.Docker(b)
	db := storetest.New(b)
	old := time.Now().Add(-48 * time.Hour)
	for i := range staleContainers {
		id := db.AddInstance(b, storetest.Instance{CreatedAt: old, LastAliveAt: old})
		spec := testenv.ContainerSpec{Labels: managed(id), Start: true, Exit: true, Fill: 500}
		if i%2 == 0 {
			spec.AnonymousVolume = "/data"
		}
		db.Exec(b, "UPDATE instances SET container_id = $2 WHERE id = $1", id, testenv.NewContainer(b, docker, spec))
	}
	engine := dockertest.Local(b)
	var scans [3]time.Duration
	var measured int64
	for b.Loop() {
		scanner := newScanner(engine, db.Store, false)
		for i := range scans {
			r := scanner.Rescan(context.Background())
			if !r.Success || r.Snapshot.StaleCount() != staleContainers {
				b.Fatalf("scan %d: %v, %d stale", i+1, r.Err, r.Snapshot.StaleCount())
			}
			scans[i] += r.Duration
			measured = r.Snapshot.ReclaimableBytes()
		}
	}
	n := time.Duration(b.N)
	for i, d := range scans {
		b.ReportMetric(float64((d/n).Microseconds())/1000, fmt.Sprintf("ms/scan-%d", i+1))
	}
	b.ReportMetric(float64(((scans[1]-scans[2])/n/50).Microseconds())/1000, "ms/measurement")
	b.ReportMetric(float64(measured)/(1<<20), "MiB-measured")
}
