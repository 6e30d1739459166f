// Package collector is the Prometheus side of stale-exporter: a scan
// result in, const metrics out (the gauges of every instance and the scan's
// own health), and the /metrics handler that renders each scan once.
package collector

import (
	"math"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/internal/scan"
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
	staleSinceDesc = prometheus.NewDesc("instance_stale_since_seconds",
		"Unix time a stale instance became stale: last alive plus its own threshold, or the end of a keep if later. Only for stale instances.",
		instanceLabels, nil)
	keptUntilDesc = prometheus.NewDesc("instance_kept_until_seconds",
		"Unix time a kept instance's keep ends (+Inf: forever). Only for kept instances.", instanceLabels, nil)
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
	unownedDesc = prometheus.NewDesc(namespace+"_unowned_instances",
		"Instances no Docker engine owns yet (instances.docker_host NULL), as this exporter's last good scan read them.", hostLabel, nil)
	judgesUnownedDesc = prometheus.NewDesc(namespace+"_judges_unowned",
		"1 if this exporter judges and cleans the instances no engine owns (--docker.claim-unowned and the engines registered).", hostLabel, nil)
	unparsableDesc = prometheus.NewDesc(namespace+"_unparsable_label_instances",
		"Instances whose docker-watcher labels do not parse, as this exporter's last good scan judged them: never stale until the label is fixed.", hostLabel, nil)
	reclaimableDesc = prometheus.NewDesc(namespace+"_reclaimable_bytes",
		"Disk the stale containers hold (writable layers and anonymous volumes), as far as measured.", hostLabel, nil)
	engineSeenDesc = prometheus.NewDesc(namespace+"_engine_last_seen_timestamp_seconds",
		"Unix time of the latest heartbeat of each Docker engine registered with the store.", []string{stale.KeyDockerHost, "engine"}, nil)
)

// Collector exports one scan result, kube-state-metrics style: the result
// in, const metrics out, no I/O. One series of each gauge per instance of
// the snapshot, and the scan's own health.
type Collector struct {
	result     scan.Result
	dockerHost string
}

// New returns the Collector of a scan result of dockerHost's engine.
func New(result scan.Result, dockerHost string) *Collector {
	return &Collector{result: result, dockerHost: dockerHost}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lastAliveDesc, staleDesc, staleSinceDesc, keptUntilDesc, scanSuccessDesc, scanDurationDesc,
		lastScanDesc, dockerUpDesc, storeUpDesc, thresholdDesc, unownedDesc, judgesUnownedDesc, unparsableDesc, reclaimableDesc, engineSeenDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	r, host := c.result, c.dockerHost
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(scanSuccessDesc, boolValue(r.Success), host)
	gauge(scanDurationDesc, r.Duration.Seconds(), host)
	gauge(dockerUpDesc, boolValue(r.DockerUp), host)
	gauge(storeUpDesc, boolValue(r.StoreUp), host)
	if !r.LastSuccess.IsZero() {
		gauge(lastScanDesc, unixSeconds(r.LastSuccess), host)
	}
	snap := r.Snapshot
	if snap == nil {
		return
	}
	gauge(thresholdDesc, snap.Threshold.Seconds(), host)
	gauge(unownedDesc, float64(snap.UnownedCount()), host)
	gauge(judgesUnownedDesc, boolValue(snap.Scope.Unowned), host)
	gauge(unparsableDesc, float64(snap.UnparsableCount()), host)
	gauge(reclaimableDesc, float64(snap.ReclaimableBytes()), host)
	names := make([]string, 0, len(snap.Engines))
	for name := range snap.Engines {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		gauge(engineSeenDesc, unixSeconds(snap.Engines[name]), host, name)
	}
	for _, o := range snap.Observations {
		in := o.Instance
		labels := []string{in.ID, in.ProjectName, in.StageName, in.ImageTag, in.ContainerID, in.DockerHost}
		gauge(lastAliveDesc, unixSeconds(o.Verdict.LastAlive), labels...)
		gauge(staleDesc, boolValue(o.Verdict.Stale), labels...)
		if o.Verdict.Stale {
			gauge(staleSinceDesc, unixSeconds(o.Verdict.StaleSince), labels...)
		}
		if k := o.Verdict.Keep; k != nil {
			until := math.Inf(1)
			if !k.Forever() {
				until = unixSeconds(k.Until)
			}
			gauge(keptUntilDesc, until, labels...)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
