package cleanup

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/store"
)

type metrics struct {
	cleanups *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		cleanups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_cleanups_total",
			Help: "Cleanup jobs finished by this process, by trigger and result.",
		}, []string{"trigger", "result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stale_exporter_cleanup_jobs_in_flight",
			Help: "Cleanup jobs this process is carrying out now.",
		}),
	}
	// Every series exists from the start, so rates and dashboards have data.
	for _, trigger := range Triggers {
		for _, result := range []string{store.ResultRemoved, store.ResultSkipped, store.ResultFailed, ResultWouldRemove} {
			m.cleanups.WithLabelValues(trigger, result)
		}
	}
	reg.MustRegister(m.cleanups, m.inFlight)
	return m
}
