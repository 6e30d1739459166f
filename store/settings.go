package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrSettings marks a settings table that answers but holds no usable stale
// threshold: no row, several, NULL, or a value that is not one integer. The
// store is up and misconfigured; scans and cleanups fail safe, naming it.
var ErrSettings = errors.New("settings")

// thresholdQuery reads the raw threshold from a settings column, or from
// the key/value rows with the key stale_threshold_days (a text or JSON
// value). It reads up to two rows, so that two rows are seen as two: which
// one a LIMIT 1 without an order returns is the planner's choice.
func (s *Store) thresholdQuery() string {
	if s.shape.SettingsKeyValue {
		return `SELECT value::text FROM settings WHERE key = 'stale_threshold_days' LIMIT 2`
	}
	return "SELECT stale_threshold_days::text FROM settings LIMIT 2"
}

// scanThreshold reads the threshold query's rows into days: exactly one
// row holding exactly one integer, else an error wrapping ErrSettings.
func scanThreshold(rows pgx.Rows, days *int64) error {
	var raws []*string
	for rows.Next() {
		var raw *string
		if err := rows.Scan(&raw); err != nil {
			return err
		}
		raws = append(raws, raw)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	switch {
	case len(raws) == 0:
		return fmt.Errorf("%w: table settings has no stale_threshold_days: insert a row (or, for key/value settings, the key stale_threshold_days)", ErrSettings)
	case len(raws) > 1:
		return fmt.Errorf("%w: table settings holds more than one stale_threshold_days: keep exactly one", ErrSettings)
	case raws[0] == nil:
		return fmt.Errorf("%w: settings.stale_threshold_days is NULL", ErrSettings)
	}
	n, err := parseDays(*raws[0])
	if err != nil {
		return fmt.Errorf("%w: settings.stale_threshold_days = %q: %v", ErrSettings, *raws[0], err)
	}
	*days = n
	return nil
}

// parseDays reads a whole number of days exactly: 7, "7" (a JSON string),
// or 7.0 from a numeric column; 1.4 is refused, never rounded.
func parseDays(raw string) (int64, error) {
	v := strings.TrimSpace(raw)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = strings.TrimSpace(v[1 : len(v)-1])
	}
	if whole, frac, ok := strings.Cut(v, "."); ok && frac != "" && strings.Trim(frac, "0") == "" {
		v = whole
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("not a whole number of days")
	}
	return n, nil
}

// ThresholdDays reads settings.stale_threshold_days.
func (s *Store) ThresholdDays(ctx context.Context) (int64, error) {
	rows, err := s.pool.Query(ctx, s.thresholdQuery())
	if err != nil {
		return 0, fmt.Errorf("read stale threshold: %w", err)
	}
	defer rows.Close()
	var days int64
	if err := scanThreshold(rows, &days); err != nil {
		return 0, fmt.Errorf("read stale threshold: %w", err)
	}
	return days, nil
}
