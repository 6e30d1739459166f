package cleanup

import (
	"context"
	"fmt"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// StaleAlertName is the alert of alerts/ the webhook acts on.
const StaleAlertName = "StaleContainer"

// The rule's label that asks for a cleanup: policy lives in the rule file.
const (
	labelActionName  = "action"
	labelActionValue = "cleanup"
)

// Outcomes of one alert, the values of stale_exporter_webhook_alerts_total{result}.
const (
	AlertRecorded         = "recorded"
	AlertCleanupRequested = "cleanup_requested"
	AlertDuplicate        = "duplicate"
	AlertResolved         = "resolved"
	AlertIgnored          = "ignored"
	AlertInvalid          = "invalid"
	// AlertError: the store failed; the webhook answers 503 and
	// Alertmanager retries.
	AlertError = "error"
)

// AlertResults are every outcome of an alert.
var AlertResults = []string{AlertRecorded, AlertCleanupRequested, AlertDuplicate, AlertResolved, AlertIgnored, AlertInvalid, AlertError}

// AlertOutcome is what became of one alert.
type AlertOutcome struct {
	Fingerprint string
	Status      string
	InstanceID  string
	Result      string
	Detail      string
	// Job is the cleanup requested (or, in a dry run, judged), if any.
	Job *store.Job
}

// HandleAlert acts on one alert by its own status (a group's status is
// "firing" as long as any of its alerts fires). A firing StaleContainer is
// recorded once per occurrence (fingerprint and start), with one event_log
// warning; the first time, an alert labelled action="cleanup" also requests
// a cleanup. It returns an error only when the store failed: an alert the
// store refuses as data is invalid, since retrying it cannot help.
func (s *Service) HandleAlert(ctx context.Context, alert template.Alert, requestedBy string) (AlertOutcome, error) {
	o := AlertOutcome{Fingerprint: alert.Fingerprint, Status: alert.Status, InstanceID: alert.Labels[stale.KeyInstanceID]}
	if o.Fingerprint == "" {
		o.Fingerprint = labelSet(alert.Labels).Fingerprint().String()
	}
	ctx, done := s.storeDeadline(ctx)
	defer done()
	result, err := s.actOnAlert(ctx, alert, requestedBy, &o)
	if store.IsInvalidData(err) {
		result, o.Detail, err = AlertInvalid, "the store refused the alert's data: "+err.Error(), nil
	}
	if err != nil {
		return o, s.explain(ctx, "record the alert", err)
	}
	o.Result = result
	return o, nil
}

func (s *Service) actOnAlert(ctx context.Context, alert template.Alert, requestedBy string, o *AlertOutcome) (string, error) {
	switch {
	case alert.Status == string(model.AlertResolved):
		return AlertResolved, nil
	case alert.Status != string(model.AlertFiring):
		o.Detail = fmt.Sprintf("unknown alert status %q", alert.Status)
		return AlertInvalid, nil
	case alert.Labels[model.AlertNameLabel] != StaleAlertName:
		o.Detail = fmt.Sprintf("alert %q is not %s", alert.Labels[model.AlertNameLabel], StaleAlertName)
		return AlertIgnored, nil
	case stale.ValidID(o.InstanceID) != nil:
		o.Detail = "label " + stale.KeyInstanceID + ": " + stale.ValidID(o.InstanceID).Error()
		return AlertInvalid, nil
	case alert.StartsAt.IsZero():
		o.Detail = "startsAt is missing"
		return AlertInvalid, nil
	}

	l := alert.Labels
	wantCleanup := l[labelActionName] == labelActionValue
	req := store.JobRequest{InstanceID: o.InstanceID, ContainerID: l[stale.KeyContainerID], Trigger: TriggerWebhook, RequestedBy: requestedBy}
	var enqueue *store.JobRequest
	if wantCleanup && !s.cfg.DryRun {
		enqueue = &req
	}
	message := fmt.Sprintf("container %s of %s/%s (%s) is stale", stale.ShortID(l[stale.KeyContainerID]),
		l[stale.KeyProjectName], l[stale.KeyStageName], l[stale.KeyImageTag])
	if summary := alert.Annotations["summary"]; summary != "" {
		message = summary
	}
	details := map[string]any{"alertname": StaleAlertName, "fingerprint": o.Fingerprint, "starts_at": alert.StartsAt,
		"cleanup_requested": wantCleanup}
	for _, k := range stale.InstanceKeys[1:] {
		details[k] = l[k]
	}
	recorded, job, err := s.store.RecordAlert(ctx,
		store.AlertOccurrence{Fingerprint: o.Fingerprint, StartsAt: alert.StartsAt, InstanceID: o.InstanceID},
		store.Event{Severity: store.SeverityWarning, Message: message, InstanceID: o.InstanceID, Details: details},
		enqueue)
	switch {
	case err != nil:
		return "", err
	case !recorded:
		return AlertDuplicate, nil
	case !wantCleanup:
		return AlertRecorded, nil
	case enqueue == nil:
		dry := s.dryRun(ctx, req)
		o.Job = &dry
		return AlertCleanupRequested, nil
	case job.ID == 0: // nothing enqueued
		o.Detail = "instance no longer exists; nothing to clean"
		return AlertRecorded, nil
	}
	s.wakeWorkers()
	o.Job = &job
	return AlertCleanupRequested, nil
}

func labelSet(kv template.KV) model.LabelSet {
	ls := make(model.LabelSet, len(kv))
	for k, v := range kv {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}
