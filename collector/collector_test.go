package collector_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

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

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// Collect over a hand-made snapshot, every metric named.
func TestCollectNamesEveryMetric(t *testing.T) {
	last := t0.Add(-2 * time.Hour)
	snap := &stale.Snapshot{Threshold: time.Hour, ScannedAt: t0, Observations: []stale.Observation{
		{Instance: stale.Instance{ID: "a", ProjectName: "shop", StageName: "preview", ImageTag: "pr-1", ContainerID: "c1", DockerHost: "test-engine"},
			Verdict: stale.Verdict{Stale: true, LastAlive: last, StaleSince: last.Add(time.Hour)}, Reclaimable: 4096, Measured: true},
		{Instance: stale.Instance{ID: "b", ProjectName: "shop", StageName: "prod", ImageTag: "v1", ContainerID: "c2"},
			Verdict: stale.Verdict{LastAlive: t0}},
		{Instance: stale.Instance{ID: "k", ProjectName: "shop", StageName: "prod", ImageTag: "v2", ContainerID: "c3"},
			Verdict: stale.Verdict{LastAlive: last, Keep: &stale.Keep{By: "ops"}}},
		{Instance: stale.Instance{ID: "u", ProjectName: "shop", StageName: "prod", ImageTag: "v3", ContainerID: "c4"},
			Verdict: stale.Verdict{LastAlive: last, Keep: &stale.Keep{Until: t0.Add(time.Hour)}}},
		{Instance: stale.Instance{ID: "p", ProjectName: "shop", StageName: "prod", ImageTag: "v4", ContainerID: "c5"},
			Verdict: stale.Verdict{LastAlive: last, Reason: stale.ReasonPolicyUnparsable}},
	}}
	snap.Scope = stale.Scope{Host: "test-engine", Unowned: true}
	snap.Engines = map[string]time.Time{"test-engine": t0, "other": t0.Add(-time.Hour)}
	c := collector.New(scan.Result{Snapshot: snap, Success: true, DockerUp: true, StoreUp: true,
		Duration: 1500 * time.Millisecond, LastSuccess: t0, Seq: 1}, "test-engine")
	want := fmt.Sprintf(`
# HELP instance_last_alive_seconds Unix time the instance's container was last seen running.
# TYPE instance_last_alive_seconds gauge
instance_last_alive_seconds{container_id="c1",docker_host="test-engine",image_tag="pr-1",instance_id="a",project_name="shop",stage_name="preview"} %[1]d
instance_last_alive_seconds{container_id="c2",docker_host="",image_tag="v1",instance_id="b",project_name="shop",stage_name="prod"} %[2]d
instance_last_alive_seconds{container_id="c3",docker_host="",image_tag="v2",instance_id="k",project_name="shop",stage_name="prod"} %[1]d
instance_last_alive_seconds{container_id="c4",docker_host="",image_tag="v3",instance_id="u",project_name="shop",stage_name="prod"} %[1]d
instance_last_alive_seconds{container_id="c5",docker_host="",image_tag="v4",instance_id="p",project_name="shop",stage_name="prod"} %[1]d
# HELP instance_kept_until_seconds Unix time a kept instance's keep ends (+Inf: forever). Only for kept instances.
# TYPE instance_kept_until_seconds gauge
instance_kept_until_seconds{container_id="c3",docker_host="",image_tag="v2",instance_id="k",project_name="shop",stage_name="prod"} +Inf
instance_kept_until_seconds{container_id="c4",docker_host="",image_tag="v3",instance_id="u",project_name="shop",stage_name="prod"} %[4]d
# HELP instance_stale 1 if the instance's container is stale (not running for longer than the threshold), else 0.
# TYPE instance_stale gauge
instance_stale{container_id="c1",docker_host="test-engine",image_tag="pr-1",instance_id="a",project_name="shop",stage_name="preview"} 1
instance_stale{container_id="c2",docker_host="",image_tag="v1",instance_id="b",project_name="shop",stage_name="prod"} 0
instance_stale{container_id="c3",docker_host="",image_tag="v2",instance_id="k",project_name="shop",stage_name="prod"} 0
instance_stale{container_id="c4",docker_host="",image_tag="v3",instance_id="u",project_name="shop",stage_name="prod"} 0
instance_stale{container_id="c5",docker_host="",image_tag="v4",instance_id="p",project_name="shop",stage_name="prod"} 0
# HELP instance_stale_since_seconds Unix time a stale instance became stale: last alive plus its own threshold, or the end of a keep if later. Only for stale instances.
# TYPE instance_stale_since_seconds gauge
instance_stale_since_seconds{container_id="c1",docker_host="test-engine",image_tag="pr-1",instance_id="a",project_name="shop",stage_name="preview"} %[5]d
# HELP stale_exporter_docker_up 1 if the Docker engine answered the latest scan.
# TYPE stale_exporter_docker_up gauge
stale_exporter_docker_up{docker_host="test-engine"} 1
# HELP stale_exporter_engine_last_seen_timestamp_seconds Unix time of the latest heartbeat of each Docker engine registered with the store.
# TYPE stale_exporter_engine_last_seen_timestamp_seconds gauge
stale_exporter_engine_last_seen_timestamp_seconds{docker_host="test-engine",engine="other"} %[3]d
stale_exporter_engine_last_seen_timestamp_seconds{docker_host="test-engine",engine="test-engine"} %[2]d
# HELP stale_exporter_judges_unowned 1 if this exporter judges and cleans the instances no engine owns (--docker.claim-unowned and the engines registered).
# TYPE stale_exporter_judges_unowned gauge
stale_exporter_judges_unowned{docker_host="test-engine"} 1
# HELP stale_exporter_last_scan_timestamp_seconds Unix time of the last successful scan.
# TYPE stale_exporter_last_scan_timestamp_seconds gauge
stale_exporter_last_scan_timestamp_seconds{docker_host="test-engine"} %[2]d
# HELP stale_exporter_reclaimable_bytes Disk the stale containers hold (writable layers and anonymous volumes), as far as measured.
# TYPE stale_exporter_reclaimable_bytes gauge
stale_exporter_reclaimable_bytes{docker_host="test-engine"} 4096
# HELP stale_exporter_scan_duration_seconds Duration of the latest scan.
# TYPE stale_exporter_scan_duration_seconds gauge
stale_exporter_scan_duration_seconds{docker_host="test-engine"} 1.5
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 1
# HELP stale_exporter_store_up 1 if the store answered the latest scan.
# TYPE stale_exporter_store_up gauge
stale_exporter_store_up{docker_host="test-engine"} 1
# HELP stale_exporter_threshold_seconds Time a container must have been down before its instance is stale.
# TYPE stale_exporter_threshold_seconds gauge
stale_exporter_threshold_seconds{docker_host="test-engine"} 3600
# HELP stale_exporter_unowned_instances Instances no Docker engine owns yet (instances.docker_host NULL), as this exporter's last good scan read them.
# TYPE stale_exporter_unowned_instances gauge
stale_exporter_unowned_instances{docker_host="test-engine"} 4
# HELP stale_exporter_unparsable_label_instances Instances whose docker-watcher labels do not parse, as this exporter's last good scan judged them: never stale until the label is fixed.
# TYPE stale_exporter_unparsable_label_instances gauge
stale_exporter_unparsable_label_instances{docker_host="test-engine"} 1
`, last.Unix(), t0.Unix(), t0.Add(-time.Hour).Unix(), t0.Add(time.Hour).Unix(), last.Add(time.Hour).Unix())
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 5*2+1+2+12 {
		t.Fatalf("%d series, want 2 per instance, 1 stale since, 2 kept until and 12 of the scan", n)
	}
	// No snapshot: the scan's health only, never an instance.
	if n := testutil.CollectAndCount(collector.New(scan.Result{Seq: 2}, "test-engine"), "instance_stale", "instance_last_alive_seconds"); n != 0 {
		t.Fatalf("without a snapshot, %d instance series", n)
	}
}

// The gauges of a scan of real containers, object to exposition text.
func TestMetricsExposition(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	old := time.Now().Add(-2 * time.Hour)
	staleID := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: "preview", ImageTag: "pr-17", CreatedAt: old, LastAliveAt: old})
	cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: staleID}})
	db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", staleID, cid)

	scanner := scan.NewScanner(dockertest.Local(t), db.Store, scan.Config{Config: stale.Config{Host: testenv.EngineName,
		Unowned: stale.UnownedOn, Threshold: time.Hour, Now: testenv.Ahead(2 * time.Hour)}, MaxSnapshotAge: time.Minute}, slog.New(slog.DiscardHandler))
	c := collector.New(scanner.Result(context.Background()), testenv.EngineName)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	// The container's creation is its instance's latest sign of life.
	res, err := docker.ContainerInspect(context.Background(), cid, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created, err := time.Parse(time.RFC3339Nano, res.Container.Created)
	if err != nil {
		t.Fatal(err)
	}
	lastAlive := float64(created.Unix())
	labels := `container_id="` + cid + `",docker_host="test-engine",image_tag="pr-17",instance_id="` + staleID + `",project_name="shop",stage_name="preview"`
	want := `
# HELP instance_stale 1 if the instance's container is stale (not running for longer than the threshold), else 0.
# TYPE instance_stale gauge
instance_stale{` + labels + `} 1
# HELP stale_exporter_scan_success 1 if the latest scan of Docker and the store succeeded.
# TYPE stale_exporter_scan_success gauge
stale_exporter_scan_success{docker_host="test-engine"} 1
# HELP stale_exporter_docker_up 1 if the Docker engine answered the latest scan.
# TYPE stale_exporter_docker_up gauge
stale_exporter_docker_up{docker_host="test-engine"} 1
# HELP stale_exporter_store_up 1 if the store answered the latest scan.
# TYPE stale_exporter_store_up gauge
stale_exporter_store_up{docker_host="test-engine"} 1
# HELP stale_exporter_threshold_seconds Time a container must have been down before its instance is stale.
# TYPE stale_exporter_threshold_seconds gauge
stale_exporter_threshold_seconds{docker_host="test-engine"} 3600
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "instance_stale", "stale_exporter_scan_success",
		"stale_exporter_docker_up", "stale_exporter_store_up", "stale_exporter_threshold_seconds"); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "instance_last_alive_seconds" {
			if got := f.GetMetric()[0].GetGauge().GetValue(); got != lastAlive {
				t.Errorf("instance_last_alive_seconds = %f, want %f", got, lastAlive)
			}
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "instance", "job", "stage":
					t.Errorf("metric %s uses reserved label %q", f.GetName(), l.GetName())
				}
			}
		}
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}
