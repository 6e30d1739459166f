package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

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
	// A fixed order keeps one statement text per shape.
	for _, c := range []struct{ col, id string }{{"project_id", e.ProjectID}, {"instance_id", e.InstanceID}} {
		if t, ok := s.shape.EventColumns[c.col]; ok {
			add(c.col, "nullif($n::text, '')::"+castType(t), c.id)
		}
	}
	if t, ok := s.shape.EventColumns["details"]; ok && e.Details != nil {
		details, err := json.Marshal(e.Details)
		if err != nil {
			return fmt.Errorf("encode event details: %w", err)
		}
		add("details", "$n::text::"+castType(t), string(details))
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

// castType is the cast for a column of the given information_schema type.
func castType(dataType string) string {
	if dataType == "character varying" || dataType == "character" {
		return "text"
	}
	return dataType
}
