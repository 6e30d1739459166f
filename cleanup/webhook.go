package cleanup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"github.com/docker-watcher/stale-exporter/store"
)

// StaleAlertName is the alert of alerts/ this webhook acts on.
const StaleAlertName = "StaleContainer"

// The alert labels the webhook reads: the metric's labels and the rule's
// action label.
const (
	labelActionName  = "action"
	labelActionValue = "cleanup"
)

// WebhookMessage is an Alertmanager webhook payload: the template data and
// the count of alerts Alertmanager left out (max_alerts).
type WebhookMessage struct {
	template.Data
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// ParseWebhook decodes an Alertmanager webhook payload. Unknown fields are
// tolerated (Alertmanager adds fields over time); a payload that is not a
// JSON object with an alerts list, or that is ambiguous (a key twice, a
// null), is refused.
func ParseWebhook(body []byte) (WebhookMessage, error) {
	var msg WebhookMessage
	if err := decodeStrict(body, &msg, true); err != nil {
		return WebhookMessage{}, fmt.Errorf("malformed webhook payload: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return WebhookMessage{}, fmt.Errorf("malformed webhook payload: %w", err)
	}
	if _, ok := fields["alerts"]; !ok {
		return WebhookMessage{}, errors.New("malformed webhook payload: no alerts field")
	}
	return msg, nil
}

// maxFingerprintLen bounds an alert's fingerprint (Alertmanager's are 16
// hex digits) so that it fits the occurrence index.
const maxFingerprintLen = 64

// validateAlert refuses what PostgreSQL could not store, before anything is
// persisted: an alert that can never be recorded must be answered invalid,
// not 5xx (Alertmanager would retry it forever).
func validateAlert(alert template.Alert) error {
	if len(alert.Fingerprint) > maxFingerprintLen {
		return fmt.Errorf("fingerprint is %d characters, at most %d", len(alert.Fingerprint), maxFingerprintLen)
	}
	for _, field := range []struct {
		name string
		kv   template.KV
	}{{"label", alert.Labels}, {"annotation", alert.Annotations}} {
		for k, v := range field.kv {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				return fmt.Errorf("%s %q contains a NUL character", field.name, strings.ReplaceAll(k, "\x00", ""))
			}
		}
	}
	for name, v := range map[string]string{"fingerprint": alert.Fingerprint, "status": alert.Status, "generatorURL": alert.GeneratorURL} {
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("%s contains a NUL character", name)
		}
	}
	return nil
}

// alertOutcome is the webhook's answer for one alert.
type alertOutcome struct {
	Fingerprint string   `json:"fingerprint"`
	Status      string   `json:"status"`
	InstanceID  string   `json:"instance_id,omitempty"`
	Result      string   `json:"result"`
	Detail      string   `json:"detail,omitempty"`
	Job         *jobView `json:"job,omitempty"`
}

func (a *API) webhook(w http.ResponseWriter, r *http.Request, _ httprouter.Params, caller string) {
	body, status, err := readBody(w, r, a.cfg.MaxBodyBytes, false)
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
		a.svc.metrics.webhookTruncated.Add(float64(msg.TruncatedAlerts))
		a.logger.Warn("Alertmanager left alerts out of a webhook delivery; set max_alerts: 0 on the receiver",
			"truncated_alerts", msg.TruncatedAlerts, "group_key", msg.GroupKey)
	}
	outcomes := make([]alertOutcome, 0, len(msg.Alerts))
	failed := 0
	for _, alert := range msg.Alerts {
		o, err := a.svc.judgeAlert(r.Context(), alert, caller)
		if err != nil {
			failed++
			a.logger.Error("record alert", "fingerprint", o.Fingerprint, "err", err)
			o.Result, o.Detail = "error", "could not be recorded; retry"
		}
		outcomes = append(outcomes, o)
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

// judgeAlert acts on one alert by its own status (a group's status is
// "firing" as long as any of its alerts fires). A firing StaleContainer is
// recorded once per occurrence (fingerprint and start), with one event_log
// warning; the first time, an alert labelled action="cleanup" also requests
// a cleanup. It returns an error only when the store failed; an alert the
// store refuses as data is invalid.
func (s *Service) judgeAlert(ctx context.Context, alert template.Alert, caller string) (alertOutcome, error) {
	o := alertOutcome{Fingerprint: alert.Fingerprint, Status: alert.Status, InstanceID: alert.Labels["instance_id"]}
	if err := validateAlert(alert); err != nil {
		o.Fingerprint, o.InstanceID = "", ""
		o.Result, o.Detail = AlertInvalid, err.Error()
		s.metrics.webhookAlerts.WithLabelValues(AlertInvalid).Inc()
		return o, nil
	}
	if o.Fingerprint == "" {
		o.Fingerprint = labelSet(alert.Labels).Fingerprint().String()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	result, err := s.actOnAlert(ctx, alert, caller, &o)
	if store.IsInvalidData(err) {
		result, o.Detail, err = AlertInvalid, "the store refused the alert's data: "+err.Error(), nil
	}
	if err != nil {
		return o, err
	}
	o.Result = result
	s.metrics.webhookAlerts.WithLabelValues(result).Inc()
	return o, nil
}

func (s *Service) actOnAlert(ctx context.Context, alert template.Alert, caller string, o *alertOutcome) (string, error) {
	switch {
	case alert.Status == string(model.AlertResolved):
		return AlertResolved, nil
	case alert.Status != string(model.AlertFiring):
		o.Detail = fmt.Sprintf("unknown alert status %q", alert.Status)
		return AlertInvalid, nil
	case alert.Labels[model.AlertNameLabel] != StaleAlertName:
		o.Detail = fmt.Sprintf("alert %q is not %s", alert.Labels[model.AlertNameLabel], StaleAlertName)
		return AlertIgnored, nil
	case !store.IsUUID(o.InstanceID):
		o.Detail = "label instance_id is missing or not a UUID"
		return AlertInvalid, nil
	case alert.StartsAt.IsZero():
		o.Detail = "startsAt is missing"
		return AlertInvalid, nil
	}

	wantCleanup := alert.Labels[labelActionName] == labelActionValue
	var cleanup *store.JobRequest
	if wantCleanup && !s.cfg.DryRun {
		cleanup = &store.JobRequest{InstanceID: o.InstanceID, ContainerID: alert.Labels["container_id"],
			Trigger: TriggerWebhook, RequestedBy: caller}
	}
	l := alert.Labels
	message := fmt.Sprintf("container %s of %s/%s (%s) is stale", store.ShortID(l["container_id"]), l["project_name"], l["stage_name"], l["image_tag"])
	if summary := alert.Annotations["summary"]; summary != "" {
		message = summary
	}
	recorded, job, err := s.store.RecordAlert(ctx,
		store.AlertOccurrence{Fingerprint: o.Fingerprint, StartsAt: alert.StartsAt, InstanceID: o.InstanceID},
		store.Event{
			Severity:   store.SeverityWarning,
			Message:    message,
			InstanceID: o.InstanceID,
			Details: map[string]any{
				"alertname": StaleAlertName, "fingerprint": o.Fingerprint, "starts_at": alert.StartsAt,
				"container_id": l["container_id"], "project_name": l["project_name"], "stage_name": l["stage_name"],
				"image_tag": l["image_tag"], "cleanup_requested": wantCleanup,
			},
		}, cleanup)
	if err != nil {
		return "", err
	}
	if !recorded {
		return AlertDuplicate, nil
	}
	if !wantCleanup {
		return AlertRecorded, nil
	}
	if cleanup == nil {
		dry := s.dryRun(ctx, store.JobRequest{InstanceID: o.InstanceID, ContainerID: alert.Labels["container_id"],
			Trigger: TriggerWebhook, RequestedBy: caller})
		v := viewJob(dry)
		o.Job = &v
		return AlertCleanupRequested, nil
	}
	if job.ID == 0 {
		o.Detail = "instance no longer exists; nothing to clean"
		return AlertRecorded, nil
	}
	s.wakeWorkers()
	v := viewJob(job)
	o.Job = &v
	return AlertCleanupRequested, nil
}

func labelSet(kv template.KV) model.LabelSet {
	ls := make(model.LabelSet, len(kv))
	for k, v := range kv {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}
