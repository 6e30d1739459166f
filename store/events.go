package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/stale"
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

// insertEvent adds an event row (to event_log, or stale_exporter_events when
// the platform's does not fit) and announces it with pg_notify(table, id) in
// the same transaction.
func (s *Store) insertEvent(ctx context.Context, tx pgx.Tx, e Event) error {
	cols := []string{"severity", "source", "message"}
	vals := []string{"$1", "$2", "$3"}
	args := []any{e.Severity, EventSource, e.Message}
	add := func(col, val string, arg any) {
		args = append(args, arg)
		cols = append(cols, col)
		vals = append(vals, strings.ReplaceAll(val, "$n", fmt.Sprintf("$%d", len(args))))
	}
	details := e.Details
	// A fixed order keeps one statement text per shape. An id that a uuid
	// column cannot hold (a platform whose ids are text) is written NULL
	// there and kept in the details: an event must never fail a removal
	// that already happened.
	for _, c := range []struct{ col, id string }{{"project_id", e.ProjectID}, {"instance_id", e.InstanceID}} {
		t, ok := s.shape.EventColumns[c.col]
		if !ok {
			continue
		}
		id := c.id
		if t == "uuid" && id != "" && !stale.IsUUID(id) {
			details = withDetail(details, c.col, id)
			id = ""
		}
		add(c.col, "nullif($n::text, '')::"+castType(t), id)
	}
	if t, ok := s.shape.EventColumns["details"]; ok && details != nil {
		raw, err := json.Marshal(details)
		if err != nil {
			return fmt.Errorf("encode event details: %w", err)
		}
		add("details", "$n::text::"+castType(t), string(raw))
	}
	table := s.shape.EventTable
	_, err := tx.Exec(ctx, `WITH e AS (
			INSERT INTO `+table+` (`+strings.Join(cols, ", ")+`) VALUES (`+strings.Join(vals, ", ")+`)
			RETURNING id)
		SELECT pg_notify('`+table+`', id::text) FROM e`, args...)
	if err != nil {
		return fmt.Errorf("insert event into %s: %w", table, err)
	}
	return nil
}

// withDetail returns details with key set, copying it so that the caller's
// map is left alone.
func withDetail(details map[string]any, key string, value any) map[string]any {
	out := make(map[string]any, len(details)+1)
	for k, v := range details {
		out[k] = v
	}
	out[key] = value
	return out
}

// castType is the cast for a column of the given information_schema type.
func castType(dataType string) string {
	if dataType == "character varying" || dataType == "character" {
		return "text"
	}
	return dataType
}
