package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// ErrNotFound is returned when an instance does not exist.
var ErrNotFound = errors.New("not found")

// ErrNoSettings is returned when the settings table has no row, so there is
// no stale threshold to read.
var ErrNoSettings = errors.New("table settings has no stale_threshold_days: insert a row (or, for key/value settings, the key stale_threshold_days)")

const instanceColumns = `i.id::text, i.project_id::text, p.name, s.name, coalesce(i.container_id, ''),
	coalesce(i.image_tag, ''), i.status, coalesce(i.last_alive_at, 'epoch'), i.created_at, coalesce(i.docker_host, '')
	FROM instances i
	JOIN projects p ON p.id = i.project_id
	JOIN stages s ON s.id = i.stage_id`

func scanInstance(row pgx.Row) (stale.Instance, error) {
	var in stale.Instance
	err := row.Scan(&in.ID, &in.ProjectID, &in.ProjectName, &in.StageName, &in.ContainerID,
		&in.ImageTag, &in.Status, &in.LastAliveAt, &in.CreatedAt, &in.DockerHost)
	if in.LastAliveAt.Equal(time.Unix(0, 0)) {
		in.LastAliveAt = time.Time{}
	}
	return in, err
}

// Inventory is what one scan reads from the store.
type Inventory struct {
	Instances     []stale.Instance
	ThresholdDays int64
}

// ReadInventory reads, in one round trip, the stale threshold and the
// instances an exporter of dockerHost may judge: its own and the unowned.
func (s *Store) ReadInventory(ctx context.Context, dockerHost string) (Inventory, error) {
	var inv Inventory
	batch := &pgx.Batch{}
	batch.Queue(s.thresholdQuery()).QueryRow(func(row pgx.Row) error {
		return scanThreshold(row, &inv.ThresholdDays)
	})
	batch.Queue("SELECT "+instanceColumns+" WHERE i.docker_host = $1 OR i.docker_host IS NULL ORDER BY i.id", dockerHost).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			in, err := scanInstance(rows)
			if err != nil {
				return err
			}
			inv.Instances = append(inv.Instances, in)
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return Inventory{}, fmt.Errorf("read inventory: %w", err)
	}
	return inv, nil
}

// Instance reads one instance by id.
func (s *Store) Instance(ctx context.Context, id string) (stale.Instance, error) {
	in, err := scanInstance(s.pool.QueryRow(ctx, "SELECT "+instanceColumns+" WHERE i.id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return stale.Instance{}, ErrNotFound
	}
	if err != nil {
		return stale.Instance{}, fmt.Errorf("read instance %s: %w", id, err)
	}
	return in, nil
}

// thresholdQuery reads the threshold from a settings column, or from the
// key/value row stale_threshold_days (a text or JSON value).
func (s *Store) thresholdQuery() string {
	if s.shape.SettingsKeyValue {
		return `SELECT trim(both '"' from value::text)::bigint FROM settings WHERE key = 'stale_threshold_days' LIMIT 1`
	}
	return "SELECT stale_threshold_days::bigint FROM settings LIMIT 1"
}

func scanThreshold(row pgx.Row, days *int64) error {
	err := row.Scan(days)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNoSettings
	}
	return err
}

// ThresholdDays reads settings.stale_threshold_days.
func (s *Store) ThresholdDays(ctx context.Context) (int64, error) {
	var days int64
	if err := scanThreshold(s.pool.QueryRow(ctx, s.thresholdQuery()), &days); err != nil {
		return 0, fmt.Errorf("read stale threshold: %w", err)
	}
	return days, nil
}

// MarkAlive records that the containers of the given instances were seen
// running at the given time, in one statement. It never moves a time back.
func (s *Store) MarkAlive(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE instances SET last_alive_at = $2
		WHERE id = ANY($1::text[]::`+s.shape.IDTypes["instances"]+`[]) AND (last_alive_at IS NULL OR last_alive_at < $2)`, ids, at)
	if err != nil {
		return fmt.Errorf("mark %d instances alive: %w", len(ids), err)
	}
	return nil
}

// Claim makes dockerHost the owner of the given unowned instances, whose
// containers its exporter listed, and of their jobs in flight; an instance
// another host owns is left to it.
func (s *Store) Claim(ctx context.Context, dockerHost string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE instances SET docker_host = $1
			WHERE id = ANY($2::text[]::`+s.shape.IDTypes["instances"]+`[]) AND docker_host IS NULL`, dockerHost, ids); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE cleanup_jobs SET docker_host = $1
			WHERE instance_id = ANY($2::uuid[]) AND docker_host IS NULL AND state <> '`+JobDone+`'`, dockerHost, ids)
		return err
	})
	if err != nil {
		return fmt.Errorf("claim %d instances for %s: %w", len(ids), dockerHost, err)
	}
	return nil
}

// Adoption describes a labelled container that has no instance row yet.
type Adoption struct {
	InstanceID  string
	ProjectName string
	StageName   string
	ContainerID string
	ImageTag    string
	Status      string
	LastAliveAt time.Time
	// CreatedAt is when the container was created: the instance is as old
	// as its container, not as its adoption.
	CreatedAt time.Time
}

// Adopt creates the project, stage and instance rows for a container the
// platform did not record. It is a no-op if the instance row exists.
func (s *Store) Adopt(ctx context.Context, a Adoption) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var projectID, stageID string
		if err := tx.QueryRow(ctx, `INSERT INTO projects (id, name) VALUES (gen_random_uuid()::text::`+s.shape.IDTypes["projects"]+`, $1)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id::text`, a.ProjectName).Scan(&projectID); err != nil {
			return fmt.Errorf("upsert project: %w", err)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO stages (id, project_id, name) VALUES (gen_random_uuid()::text::`+s.shape.IDTypes["stages"]+`, $1, $2)
			ON CONFLICT (project_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id::text`, projectID, a.StageName).Scan(&stageID); err != nil {
			return fmt.Errorf("upsert stage: %w", err)
		}
		lastAlive := nullTime(a.LastAliveAt)
		tag, err := tx.Exec(ctx, `INSERT INTO instances (id, stage_id, project_id, container_id, image_tag, status, last_alive_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now())) ON CONFLICT (id) DO NOTHING`,
			a.InstanceID, stageID, projectID, a.ContainerID, a.ImageTag, a.Status, lastAlive, nullTime(a.CreatedAt))
		if err != nil {
			return fmt.Errorf("insert instance: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		return s.insertEvent(ctx, tx, Event{
			Severity:   SeverityInfo,
			Message:    fmt.Sprintf("adopted container %s as instance of %s/%s", stale.ShortID(a.ContainerID), a.ProjectName, a.StageName),
			ProjectID:  projectID,
			InstanceID: a.InstanceID,
		})
	})
	if err != nil {
		return fmt.Errorf("adopt container %s: %w", stale.ShortID(a.ContainerID), err)
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
