package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Event severities, as the platform's event_log uses them.
const (
	SeverityInfo    = "info"
	SeverityWarning = "warning"
)

// EventSource marks the event_log rows this service writes.
const EventSource = "stale"

// Event is one row to add to event_log.
type Event struct {
	Severity   string
	Message    string
	ProjectID  string
	InstanceID string
	Details    map[string]any
}

// insertEvent adds an event_log row and tells the platform about it with
// pg_notify('event_log', id) in the same transaction.
func insertEvent(ctx context.Context, tx pgx.Tx, e Event) error {
	var details []byte
	if e.Details != nil {
		var err error
		if details, err = json.Marshal(e.Details); err != nil {
			return fmt.Errorf("encode event details: %w", err)
		}
	}
	_, err := tx.Exec(ctx, `WITH e AS (
			INSERT INTO event_log (severity, source, message, project_id, instance_id, details)
			VALUES ($1, $2, $3, nullif($4, '')::uuid, nullif($5, '')::uuid, $6)
			RETURNING id)
		SELECT pg_notify('event_log', id::text) FROM e`,
		e.Severity, EventSource, e.Message, e.ProjectID, e.InstanceID, details)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}
