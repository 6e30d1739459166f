package store

import (
	"context"
	"fmt"
	"strings"
)

// The contract with the platform's database: what this service reads and
// writes in tables it does not own. Checked at start by Preflight.
//
//	projects (id, name)                          read; rows added by adoption
//	stages (id, project_id, name)                read; rows added by adoption
//	instances (id, stage_id, project_id, container_id, image_tag, status,
//	           created_at, updated_at)           read; status and updated_at
//	                                             written, rows deleted; the
//	                                             columns last_alive_at and
//	                                             docker_host are added
//	settings: a column stale_threshold_days, or a key/value row with
//	          key 'stale_threshold_days'         read
//	event_log (severity, source, message, and optionally project_id,
//	           instance_id, details)             rows added, when its shape
//	                                             fits; else stale_exporter_events
//
// Ids may be stored as uuid or as text holding any printable id (this
// service's own tables keep them as text, and compare them in the platform
// column's type).
var contract = map[string][]string{
	"projects":  {"id", "name"},
	"stages":    {"id", "project_id", "name"},
	"instances": {"id", "stage_id", "project_id", "container_id", "image_tag", "status", "created_at", "updated_at", "last_alive_at", "docker_host"},
}

// Shape is how the platform's database is shaped where the contract allows
// a choice, as Preflight found it.
type Shape struct {
	// IDTypes are the types of the ids of projects, stages and instances:
	// uuid or text.
	IDTypes map[string]string
	// SettingsKeyValue is true when settings holds key/value rows.
	SettingsKeyValue bool
	// EventTable is the table events go to: event_log, or
	// stale_exporter_events when the platform's does not fit.
	EventTable string
	// EventColumns are the optional event columns the table has.
	EventColumns map[string]string
	// EventMisfit says why the platform's event_log does not fit.
	EventMisfit string
}

type column struct {
	dataType string
	required bool // NOT NULL without a default
}

func (s *Store) columns(ctx context.Context, table string) (map[string]column, error) {
	rows, err := s.pool.Query(ctx, `SELECT column_name, data_type, is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'
		FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`, table)
	if err != nil {
		return nil, fmt.Errorf("store preflight: read the columns of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]column{}
	for rows.Next() {
		var name, dataType string
		var required bool
		if err := rows.Scan(&name, &dataType, &required); err != nil {
			return nil, err
		}
		out[name] = column{dataType: dataType, required: required}
	}
	return out, rows.Err()
}

// idType maps a column's type to the cast this service uses for it.
func idType(table, name string, c column) (string, error) {
	switch c.dataType {
	case "uuid":
		return "uuid", nil
	case "text", "character varying", "character":
		return "text", nil
	}
	return "", fmt.Errorf("store preflight: %s.%s is %s; this service accepts ids stored as uuid or text", table, name, c.dataType)
}

// defaultShape is this repository's own schema, the shape assumed until
// Preflight has looked.
func defaultShape() Shape {
	return Shape{
		IDTypes:      map[string]string{"projects": "uuid", "stages": "uuid", "instances": "uuid"},
		EventTable:   "event_log",
		EventColumns: map[string]string{"project_id": "uuid", "instance_id": "uuid", "details": "jsonb"},
	}
}

// Shape is the shape Preflight found.
func (s *Store) Shape() Shape { return s.shape }

// addedColumns are the contract's columns this service's migrations add.
var addedColumns = map[string]bool{"last_alive_at": true, "docker_host": true}

// checkPlatformColumns checks the platform's tables that exist already for
// the contract's columns, but those the migrations add.
func (s *Store) checkPlatformColumns(ctx context.Context) error {
	for _, table := range []string{"projects", "stages", "instances"} {
		cols, err := s.columns(ctx, table)
		if err != nil {
			return err
		}
		if len(cols) == 0 {
			continue // created by the migrations
		}
		for _, name := range contract[table] {
			if _, ok := cols[name]; !ok && !addedColumns[name] {
				return fmt.Errorf("store preflight: table %s has no column %s", table, name)
			}
		}
	}
	return nil
}

// Preflight checks the platform's tables against the contract and learns
// the shape where it may vary. Its error names the table and column that do
// not fit.
func (s *Store) Preflight(ctx context.Context) (Shape, error) {
	shape := Shape{EventTable: "event_log", IDTypes: map[string]string{}}
	for _, table := range []string{"projects", "stages", "instances"} {
		cols, err := s.columns(ctx, table)
		if err != nil {
			return shape, err
		}
		if len(cols) == 0 {
			return shape, fmt.Errorf("store preflight: table %s does not exist", table)
		}
		for _, name := range contract[table] {
			if _, ok := cols[name]; !ok {
				return shape, fmt.Errorf("store preflight: table %s has no column %s", table, name)
			}
		}
		if shape.IDTypes[table], err = idType(table, "id", cols["id"]); err != nil {
			return shape, err
		}
	}
	settings, err := s.columns(ctx, "settings")
	if err != nil {
		return shape, err
	}
	_, hasColumn := settings["stale_threshold_days"]
	_, hasKey := settings["key"]
	_, hasValue := settings["value"]
	switch {
	case hasColumn:
	case hasKey && hasValue:
		shape.SettingsKeyValue = true
	case len(settings) == 0:
		return shape, fmt.Errorf("store preflight: table settings does not exist")
	default:
		return shape, fmt.Errorf("store preflight: table settings has no column stale_threshold_days and no key/value columns")
	}
	events, err := s.columns(ctx, "event_log")
	if err != nil {
		return shape, err
	}
	shape.EventColumns = map[string]string{}
	for _, name := range []string{"id", "severity", "source", "message"} {
		if _, ok := events[name]; !ok && shape.EventMisfit == "" {
			shape.EventMisfit = "event_log has no column " + name
		}
	}
	for _, name := range []string{"project_id", "instance_id", "details"} {
		if c, ok := events[name]; ok {
			shape.EventColumns[name] = c.dataType
		}
	}
	written := map[string]bool{"severity": true, "source": true, "message": true, "project_id": true, "instance_id": true, "details": true}
	for name, c := range events {
		if c.required && !written[name] && shape.EventMisfit == "" {
			shape.EventMisfit = "event_log requires column " + name + ", which this service cannot fill"
		}
	}
	for name, want := range map[string][]string{"project_id": {"uuid", "text", "character varying"}, "instance_id": {"uuid", "text", "character varying"}, "details": {"jsonb", "json", "text"}} {
		if t, ok := shape.EventColumns[name]; ok && !contains(want, t) && shape.EventMisfit == "" {
			shape.EventMisfit = fmt.Sprintf("event_log.%s is %s", name, t)
		}
	}
	if shape.EventMisfit != "" {
		shape.EventTable = "stale_exporter_events"
		shape.EventColumns = map[string]string{"project_id": "text", "instance_id": "text", "details": "jsonb"}
	}
	s.shape = shape
	return shape, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
