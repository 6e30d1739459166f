package cleanup

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/store"
)

// Webhook alert outcomes, the values of stale_exporter_webhook_alerts_total{result}.
const (
	AlertRecorded         = "recorded"
	AlertCleanupRequested = "cleanup_requested"
	AlertDuplicate        = "duplicate"
	AlertResolved         = "resolved"
	AlertIgnored          = "ignored"
	AlertInvalid          = "invalid"
)

type metrics struct {
	cleanups      *prometheus.CounterVec
	webhookAlerts *prometheus.CounterVec
	// webhookTruncated counts the alerts Alertmanager left out of deliveries.
	webhookTruncated prometheus.Counter
	inFlight         prometheus.Gauge
	apiRequests      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		cleanups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_cleanups_total",
			Help: "Cleanup jobs finished by this process, by trigger and result.",
		}, []string{"trigger", "result"}),
		webhookAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_webhook_alerts_total",
			Help: "Alerts received on the Alertmanager webhook, by outcome.",
		}, []string{"result"}),
		webhookTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stale_exporter_webhook_truncated_alerts_total",
			Help: "Alerts Alertmanager left out of webhook deliveries (truncatedAlerts); set max_alerts: 0.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stale_exporter_cleanup_jobs_in_flight",
			Help: "Cleanup jobs this process is carrying out now.",
		}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_api_requests_total",
			Help: "Requests to the REST API and the webhook, by endpoint and HTTP status, refusals included.",
		}, []string{"endpoint", "code"}),
	}
	// Every series exists from the start, so rates and dashboards have data.
	for _, trigger := range []string{TriggerAPI, TriggerBulk, TriggerWebhook} {
		for _, result := range []string{store.ResultRemoved, store.ResultSkipped, store.ResultFailed, ResultWouldRemove} {
			m.cleanups.WithLabelValues(trigger, result)
		}
	}
	for _, result := range []string{AlertRecorded, AlertCleanupRequested, AlertDuplicate, AlertResolved, AlertIgnored, AlertInvalid} {
		m.webhookAlerts.WithLabelValues(result)
	}
	reg.MustRegister(m.cleanups, m.webhookAlerts, m.webhookTruncated, m.inFlight, m.apiRequests)
	return m
}
