package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
)

type metrics struct {
	requests      *prometheus.CounterVec
	webhookAlerts *prometheus.CounterVec
	// webhookTruncated counts the alerts Alertmanager left out of deliveries.
	webhookTruncated prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_api_requests_total",
			Help: "Requests to the REST API and the webhook, by endpoint and HTTP status, refusals included.",
		}, []string{"endpoint", "code"}),
		webhookAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stale_exporter_webhook_alerts_total",
			Help: "Alerts received on the Alertmanager webhook, by outcome.",
		}, []string{"result"}),
		webhookTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stale_exporter_webhook_truncated_alerts_total",
			Help: "Alerts Alertmanager left out of webhook deliveries (truncatedAlerts); set max_alerts: 0.",
		}),
	}
	for _, result := range cleanup.AlertResults {
		m.webhookAlerts.WithLabelValues(result)
	}
	reg.MustRegister(m.requests, m.webhookAlerts, m.webhookTruncated)
	return m
}
