package cleanup

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// The alerts of alerts/ the webhook acts on: StaleContainer tells of a stale
// instance (people are told; the webhook records it), StaleContainerCleanup
// asks for its removal once the grace has passed. Either asks for a cleanup
// only when labelled action="cleanup": policy lives in the rule file.
const (
	StaleAlertName   = "StaleContainer"
	CleanupAlertName = "StaleContainerCleanup"
)

// The rule's label that asks for a cleanup: policy lives in the rule file.
const (
	labelActionName  = "action"
	labelActionValue = "cleanup"
)

// Alert statuses, as Alertmanager sends them.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Outcomes of one alert, the values of stale_exporter_webhook_alerts_total{result}.
const (
	AlertRecorded         = "recorded"
	AlertCleanupRequested = "cleanup_requested"
	AlertDuplicate        = "duplicate"
	AlertWasResolved      = "resolved"
	AlertIgnored          = "ignored"
	AlertInvalid          = "invalid"
	// AlertError: the store failed; the webhook answers 503 and
	// Alertmanager retries.
	AlertError = "error"
)

// AlertResults are every outcome of an alert.
var AlertResults = []string{AlertRecorded, AlertCleanupRequested, AlertDuplicate, AlertWasResolved, AlertIgnored, AlertInvalid, AlertError}

// Alert is one alert of a delivery, in the domain's terms (internal/api
// reads it from Alertmanager's payload).
type Alert struct {
	// Status is the alert's own: firing or resolved.
	Status string
	// Fingerprint identifies the alert; with StartsAt, one occurrence.
	Fingerprint string
	StartsAt    time.Time
	Labels      map[string]string
	Annotations map[string]string
}

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

// maxFingerprintLen bounds an alert's fingerprint (Alertmanager's are 16
// hex digits) so that it fits the occurrence index.
const maxFingerprintLen = 64

// validateAlert refuses what PostgreSQL could not store, before anything is
// persisted: an alert that can never be recorded must be answered invalid,
// not 5xx (Alertmanager would retry it forever).
func validateAlert(a Alert) error {
	if len(a.Fingerprint) > maxFingerprintLen {
		return fmt.Errorf("fingerprint is %d characters, at most %d", len(a.Fingerprint), maxFingerprintLen)
	}
	for _, field := range []struct {
		name string
		kv   map[string]string
	}{{"label", a.Labels}, {"annotation", a.Annotations}} {
		for k, v := range field.kv {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				return fmt.Errorf("%s %q contains a NUL character", field.name, strings.ReplaceAll(k, "\x00", ""))
			}
		}
	}
	for name, v := range map[string]string{"fingerprint": a.Fingerprint, "status": a.Status} {
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("%s contains a NUL character", name)
		}
	}
	return nil
}

// HandleAlert acts on one alert by its own status (a group's status is
// "firing" as long as any of its alerts fires). A firing StaleContainer or
// StaleContainerCleanup is recorded once per occurrence (fingerprint and
// start), with one event_log warning; the first time, an alert labelled
// action="cleanup" also requests a cleanup. It returns an error only when the store failed: an alert that
// could never be stored is invalid, since retrying it cannot help.
func (s *Service) HandleAlert(ctx context.Context, alert Alert, requestedBy string) (AlertOutcome, error) {
	o := AlertOutcome{Fingerprint: alert.Fingerprint, Status: alert.Status, InstanceID: alert.Labels[stale.KeyInstanceID]}
	if err := validateAlert(alert); err != nil {
		o.Result, o.Detail = AlertInvalid, err.Error()
		return o, nil
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

// judgeAlert says what an alert is, before anything is recorded: "" for a
// firing alert of this service's of a valid instance, else its outcome.
func judgeAlert(alert Alert, o *AlertOutcome) string {
	switch {
	case alert.Status == AlertResolved:
		return AlertWasResolved
	case alert.Status != AlertFiring:
		o.Detail = fmt.Sprintf("unknown alert status %q", alert.Status)
		return AlertInvalid
	case alert.Labels["alertname"] != StaleAlertName && alert.Labels["alertname"] != CleanupAlertName:
		o.Detail = fmt.Sprintf("alert %q is neither %s nor %s", alert.Labels["alertname"], StaleAlertName, CleanupAlertName)
		return AlertIgnored
	case stale.ValidID(o.InstanceID) != nil:
		o.Detail = "label " + stale.KeyInstanceID + ": " + stale.ValidID(o.InstanceID).Error()
		return AlertInvalid
	case alert.StartsAt.IsZero():
		o.Detail = "startsAt is missing"
		return AlertInvalid
	}
	return ""
}

func (s *Service) actOnAlert(ctx context.Context, alert Alert, requestedBy string, o *AlertOutcome) (string, error) {
	if result := judgeAlert(alert, o); result != "" {
		return result, nil
	}
	l := alert.Labels
	wantCleanup := l[labelActionName] == labelActionValue
	req := store.JobRequest{InstanceID: o.InstanceID, ContainerID: l[stale.KeyContainerID], Trigger: store.TriggerWebhook, RequestedBy: requestedBy}
	var enqueue *store.JobRequest
	if wantCleanup && !s.cfg.DryRun {
		enqueue = &req
	}
	recorded, job, err := s.store.RecordAlert(ctx,
		store.AlertOccurrence{Fingerprint: o.Fingerprint, StartsAt: alert.StartsAt, InstanceID: o.InstanceID},
		alertEvent(alert, o.Fingerprint, wantCleanup), enqueue)
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
