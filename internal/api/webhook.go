package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"github.com/docker-watcher/stale-exporter/cleanup"
)

// WebhookMessage is an Alertmanager webhook payload: the template data and
// the count of alerts Alertmanager left out (max_alerts).
type WebhookMessage struct {
	template.Data
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// MaxTruncatedAlerts bounds the truncatedAlerts a payload may state: more
// alerts than any group holds is a broken or forged sender, and a counter
// must not jump by 1.8e19.
const MaxTruncatedAlerts = 1 << 20

// ParseWebhook decodes an Alertmanager webhook payload. Unknown fields are
// tolerated (Alertmanager adds fields over time); a payload that is not a
// JSON object with an alerts list, or that is ambiguous (a key twice, keys
// that differ only in case, a known key in another case, a null), is refused.
func ParseWebhook(body []byte) (WebhookMessage, error) {
	var msg WebhookMessage
	if err := decodeStrict(body, &msg, true); err != nil {
		return WebhookMessage{}, fmt.Errorf("malformed webhook payload: %w", err)
	}
	// null is refused, so a nil list means the field is absent ([] is not nil).
	if msg.Alerts == nil {
		return WebhookMessage{}, errors.New("malformed webhook payload: no alerts field")
	}
	if msg.TruncatedAlerts > MaxTruncatedAlerts {
		return WebhookMessage{}, fmt.Errorf("malformed webhook payload: truncatedAlerts %d is more than %d", msg.TruncatedAlerts, MaxTruncatedAlerts)
	}
	return msg, nil
}

// domainAlert is an alert of Alertmanager's payload in the domain's terms.
// An alert without a fingerprint (an older Alertmanager, a hand-made
// payload) gets the one Alertmanager computes from its labels.
func domainAlert(a template.Alert) cleanup.Alert {
	fingerprint := a.Fingerprint
	if fingerprint == "" {
		ls := make(model.LabelSet, len(a.Labels))
		for k, v := range a.Labels {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
		fingerprint = ls.Fingerprint().String()
	}
	return cleanup.Alert{Status: a.Status, Fingerprint: fingerprint, StartsAt: a.StartsAt, Labels: a.Labels, Annotations: a.Annotations}
}

// alertView is the webhook's answer for one alert.
type alertView struct {
	Fingerprint string   `json:"fingerprint"`
	Status      string   `json:"status"`
	InstanceID  string   `json:"instance_id,omitempty"`
	Result      string   `json:"result"`
	Detail      string   `json:"detail,omitempty"`
	Job         *JobView `json:"job,omitempty"`
}

func viewAlert(o cleanup.AlertOutcome) alertView {
	v := alertView{Fingerprint: o.Fingerprint, Status: o.Status, InstanceID: o.InstanceID, Result: o.Result, Detail: o.Detail}
	if o.Job != nil {
		job := viewJob(*o.Job)
		v.Job = &job
	}
	return v
}

func (a *API) webhook(w http.ResponseWriter, r *http.Request, _ httprouter.Params, requestedBy string) {
	if !noQuery(w, r) {
		return
	}
	body, status, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, status, err.Error(), nil)
		return
	}
	msg, err := ParseWebhook(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	if msg.TruncatedAlerts > 0 {
		a.metrics.webhookTruncated.Add(float64(msg.TruncatedAlerts))
		a.logger.Warn("Alertmanager left alerts out of a webhook delivery; set max_alerts: 0 on the receiver",
			"truncated_alerts", msg.TruncatedAlerts, "group_key", msg.GroupKey)
	}
	outcomes := make([]alertView, 0, len(msg.Alerts))
	failed := 0
	for _, alert := range msg.Alerts {
		o, err := a.svc.HandleAlert(r.Context(), domainAlert(alert), requestedBy)
		if err != nil {
			failed++
			a.logger.Error("record alert", "fingerprint", o.Fingerprint, "err", err)
			o.Result, o.Detail = cleanup.AlertError, "could not be recorded; retry: "+err.Error()
		}
		a.metrics.webhookAlerts.WithLabelValues(o.Result).Inc()
		outcomes = append(outcomes, viewAlert(o))
	}
	if failed > 0 {
		// 5xx makes Alertmanager retry; the alerts already recorded are
		// recognised as repeats.
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("store unavailable: %d of %d alerts could not be recorded", failed, len(msg.Alerts)),
			map[string]any{"alerts": outcomes})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": outcomes})
}
