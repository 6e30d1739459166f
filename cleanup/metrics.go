package cleanup

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/store"
)

type metrics struct {
	cleanups *prometheus.CounterVec
	// refusals counts the jobs and dry runs that did not remove, by code.
	refusals *prometheus.CounterVec
	// sharedLabels counts checks that found two containers carrying one
	// instance's label.
	sharedLabels prometheus.Counter
	pruned       *prometheus.CounterVec
	// reclaimed counts the disk removals freed, as the scans measured it.
	reclaimed prometheus.Counter
	inFlight  prometheus.Gauge
	// grace is the grace in force, for the rule of automatic cleanups.
	grace prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, grace time.Duration) *metrics {
	m := &metrics{
		cleanups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_cleanups_total",
			Help: "Cleanup jobs finished by this process, by trigger and result.",
		}, []string{"trigger", "result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_cleanup_refusals_total",
			Help: "Cleanups (dry runs included) this process refused, by the code of the reason.",
		}, []string{"code"}),
		sharedLabels: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stale_exporter_cleanup_shared_labels_total",
			Help: "Cleanup checks that found another container carrying the instance's label.",
		}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_pruned_records_total",
			Help: "Records of this service's own tables deleted by retention, by table.",
		}, []string{"table"}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stale_exporter_reclaimed_bytes_total",
			Help: "Disk freed by the removals of this process (writable layers and anonymous volumes), as the scans measured it.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stale_exporter_cleanup_jobs_in_flight",
			Help: "Cleanup jobs this process is carrying out now.",
		}),
		grace: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stale_exporter_cleanup_grace_seconds",
			Help: "How long an instance must have been stale before an automatic cleanup may remove it (--cleanup.grace).",
		}),
	}
	m.grace.Set(grace.Seconds())
	// Every series exists from the start, so rates and dashboards have data.
	for _, trigger := range store.Triggers {
		for _, result := range store.Results {
			m.cleanups.WithLabelValues(string(trigger), string(result))
		}
	}
	for _, code := range Codes {
		m.refusals.WithLabelValues(string(code))
	}
	for _, table := range []string{"cleanup_jobs", "alert_occurrences", "stale_exporter_events", "stale_exporter_keeps"} {
		m.pruned.WithLabelValues(table)
	}
	reg.MustRegister(m.cleanups, m.refusals, m.sharedLabels, m.pruned, m.reclaimed, m.inFlight, m.grace)
	return m
}
