package collector

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

const namespace = "stale_exporter"

// instanceLabels identify one instance; never instance, job or stage, which
// clash with Prometheus target labels.
var instanceLabels = stale.InstanceKeys

var hostLabel = []string{stale.KeyDockerHost}

var (
	lastAliveDesc = prometheus.NewDesc("instance_last_alive_seconds",
		"Unix time the instance's container was last seen running.", instanceLabels, nil)
	staleDesc = prometheus.NewDesc("instance_stale",
		"1 if the instance's container is stale (not running for longer than the threshold), else 0.", instanceLabels, nil)
	// The exporter's own metrics carry the engine it watches.
	scanSuccessDesc = prometheus.NewDesc(namespace+"_scan_success",
		"1 if the latest scan of Docker and the store succeeded.", hostLabel, nil)
	scanDurationDesc = prometheus.NewDesc(namespace+"_scan_duration_seconds",
		"Duration of the latest scan.", hostLabel, nil)
	lastScanDesc = prometheus.NewDesc(namespace+"_last_scan_timestamp_seconds",
		"Unix time of the last successful scan.", hostLabel, nil)
	dockerUpDesc = prometheus.NewDesc(namespace+"_docker_up",
		"1 if the Docker engine answered the latest scan.", hostLabel, nil)
	storeUpDesc = prometheus.NewDesc(namespace+"_store_up",
		"1 if the store answered the latest scan.", hostLabel, nil)
	thresholdDesc = prometheus.NewDesc(namespace+"_threshold_seconds",
		"Time a container must have been down before its instance is stale.", hostLabel, nil)
)

// Results gives the outcome of the latest scan; a *Scanner does, reusing a
// recent scan or sharing one in progress.
type Results interface {
	Result(ctx context.Context) Result
}

// Collector exports the scan result: one series of each gauge per instance
// of the snapshot, and the scan's own health.
type Collector struct {
	results    Results
	timeout    time.Duration
	dockerHost string
}

// New returns a Collector of the scans of dockerHost's engine that waits at
// most timeout for a scan.
func New(results Results, timeout time.Duration, dockerHost string) *Collector {
	return &Collector{results: results, timeout: timeout, dockerHost: dockerHost}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lastAliveDesc, staleDesc, scanSuccessDesc, scanDurationDesc,
		lastScanDesc, dockerUpDesc, storeUpDesc, thresholdDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	r := c.results.Result(ctx)

	ch <- prometheus.MustNewConstMetric(scanSuccessDesc, prometheus.GaugeValue, boolValue(r.Success), c.dockerHost)
	ch <- prometheus.MustNewConstMetric(scanDurationDesc, prometheus.GaugeValue, r.Duration.Seconds(), c.dockerHost)
	ch <- prometheus.MustNewConstMetric(dockerUpDesc, prometheus.GaugeValue, boolValue(r.DockerUp), c.dockerHost)
	ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, boolValue(r.StoreUp), c.dockerHost)
	if !r.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastScanDesc, prometheus.GaugeValue, unixSeconds(r.LastSuccess), c.dockerHost)
	}
	if r.Snapshot == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(thresholdDesc, prometheus.GaugeValue, r.Snapshot.Threshold.Seconds(), c.dockerHost)
	for _, o := range r.Snapshot.Observations {
		in := o.Instance
		labels := []string{in.ID, in.ProjectName, in.StageName, in.ImageTag, in.ContainerID, in.DockerHost}
		ch <- prometheus.MustNewConstMetric(lastAliveDesc, prometheus.GaugeValue, unixSeconds(o.Verdict.LastAlive), labels...)
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, boolValue(o.Verdict.Stale), labels...)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
