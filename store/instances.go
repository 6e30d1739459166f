package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// ErrNotFound is returned when an instance does not exist.
var ErrNotFound = errors.New("not found")

const instanceColumns = `i.id::text, i.project_id::text, p.name, s.name, coalesce(i.container_id, ''),
	coalesce(i.image_tag, ''), i.status, coalesce(i.last_alive_at, 'epoch'), i.created_at, coalesce(i.docker_host, ''),
	k.instance_id IS NOT NULL, k.until, coalesce(k.kept_by, ''), coalesce(k.reason, '')
	FROM instances i
	JOIN projects p ON p.id = i.project_id
	JOIN stages s ON s.id = i.stage_id
	LEFT JOIN stale_exporter_keeps k ON k.instance_id = i.id::text`

func scanInstance(row pgx.Row) (stale.Instance, error) {
	var in stale.Instance
	var kept bool
	var until *time.Time
	var keep stale.Keep
	err := row.Scan(&in.ID, &in.ProjectID, &in.ProjectName, &in.StageName, &in.ContainerID,
		&in.ImageTag, &in.Status, &in.LastAliveAt, &in.CreatedAt, &in.DockerHost, &kept, &until, &keep.By, &keep.Reason)
	if in.LastAliveAt.Equal(time.Unix(0, 0)) {
		in.LastAliveAt = time.Time{}
	}
	if kept {
		if until != nil {
			keep.Until = *until
		}
		in.Keep = &keep
	}
	return in, err
}

// InstanceKey is the form of an instance id the platform's instances.id
// holds, as this service's tables keep it: a UUID column holds lower-case
// UUIDs (and cannot hold anything else, so another id is unknown, not an
// error); a text column holds the id exactly as given.
func (s *Store) InstanceKey(id string) (string, bool) {
	if s.shape.IDTypes["instances"] != "uuid" {
		return id, id != ""
	}
	if !stale.IsUUID(id) {
		return "", false
	}
	return strings.ToLower(id), true
}

// Inventory is what one scan reads from the store.
type Inventory struct {
	Instances     []stale.Instance
	ThresholdDays int64
	// ThresholdErr is set (wrapping ErrSettings) when settings holds no
	// usable threshold; a scan with a threshold override does not need one.
	ThresholdErr error
	// Engines are the engines registered with the store (the reader's own
	// among them), with their latest heartbeat.
	Engines map[string]time.Time
	// OtherEngines counts the engines registered besides the reader's own.
	OtherEngines int
}

// ReadInventory reads, in one round trip, the stale threshold, the
// instances an exporter of dockerHost may judge (its own and the unowned),
// and how many other engines are registered; it registers dockerHost (its
// heartbeat) on the way.
func (s *Store) ReadInventory(ctx context.Context, dockerHost string) (Inventory, error) {
	var inv Inventory
	batch := &pgx.Batch{}
	batch.Queue(s.thresholdQuery()).Query(func(rows pgx.Rows) error {
		inv.ThresholdErr = scanThreshold(rows, &inv.ThresholdDays)
		if !errors.Is(inv.ThresholdErr, ErrSettings) {
			return inv.ThresholdErr
		}
		return nil
	})
	batch.Queue(heartbeatSQL, dockerHost).Exec(func(pgconn.CommandTag) error { return nil })
	batch.Queue(enginesSQL).Query(func(rows pgx.Rows) error { return scanEngines(rows, dockerHost, &inv) })
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

// enginesSQL reads the registered engines and their heartbeats.
const enginesSQL = "SELECT name, last_seen FROM stale_exporter_engines"

// scanEngines reads enginesSQL's rows into inv, counting the engines other
// than dockerHost.
func scanEngines(rows pgx.Rows, dockerHost string, inv *Inventory) error {
	inv.Engines, inv.OtherEngines = map[string]time.Time{}, 0
	for rows.Next() {
		var name string
		var seen time.Time
		if err := rows.Scan(&name, &seen); err != nil {
			return err
		}
		inv.Engines[name] = seen
		if name != dockerHost {
			inv.OtherEngines++
		}
	}
	return rows.Err()
}

// Instance reads one instance by id.
func (s *Store) Instance(ctx context.Context, id string) (stale.Instance, error) {
	key, ok := s.InstanceKey(id)
	if !ok {
		return stale.Instance{}, ErrNotFound
	}
	in, err := scanInstance(s.pool.QueryRow(ctx, "SELECT "+instanceColumns+" WHERE i.id = $1::text::"+s.shape.IDTypes["instances"], key))
	if errors.Is(err, pgx.ErrNoRows) {
		return stale.Instance{}, ErrNotFound
	}
	if err != nil {
		return stale.Instance{}, fmt.Errorf("read instance %s: %w", id, err)
	}
	return in, nil
}

// MarkAlive records when the containers of the given instances were last
// seen alive (now for a running one, its end for one that just stopped),
// in one statement. It never moves a time back.
func (s *Store) MarkAlive(ctx context.Context, at map[string]time.Time) error {
	if len(at) == 0 {
		return nil
	}
	ids, times := make([]string, 0, len(at)), make([]time.Time, 0, len(at))
	for id, t := range at {
		ids, times = append(ids, id), append(times, t)
	}
	_, err := s.pool.Exec(ctx, `UPDATE instances SET last_alive_at = v.at
		FROM unnest($1::text[], $2::timestamptz[]) AS v(id, at)
		WHERE instances.id = v.id::`+s.shape.IDTypes["instances"]+` AND (instances.last_alive_at IS NULL OR instances.last_alive_at < v.at)`, ids, times)
	if err != nil {
		return fmt.Errorf("mark %d instances alive: %w", len(ids), err)
	}
	return nil
}

// Own makes dockerHost the owner of the given unowned instances, whose
// containers its exporter listed, and of their jobs in flight; an instance
// another host owns is left to it.
func (s *Store) Own(ctx context.Context, dockerHost string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE instances SET docker_host = $1
			WHERE id = ANY($2::text[]::`+s.shape.IDTypes["instances"]+`[]) AND docker_host IS NULL`, dockerHost, ids); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE cleanup_jobs SET docker_host = $1
			WHERE instance_id = ANY($2::text[]) AND docker_host IS NULL AND state <> '`+string(JobDone)+`'`, dockerHost, ids)
		return err
	})
	if err != nil {
		return fmt.Errorf("own %d instances for %s: %w", len(ids), dockerHost, err)
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

// ErrAdoptionRefused wraps the reason a container cannot be adopted: its
// instance id does not fit instances.id, or the platform's table refused the
// rows (a constraint of its own). The scan goes on without it.
var ErrAdoptionRefused = errors.New("adoption refused")

// Adopt creates the project, stage and instance rows for a container the
// platform did not record. It is a no-op if the instance row exists. New
// project and stage ids are UUIDs, as text where the platform's ids are text.
func (s *Store) Adopt(ctx context.Context, a Adoption) error {
	key, ok := s.InstanceKey(a.InstanceID)
	if !ok {
		return fmt.Errorf("adopt container %s: %w: instance id %q does not fit instances.id, which is %s",
			stale.ShortID(a.ContainerID), ErrAdoptionRefused, a.InstanceID, s.shape.IDTypes["instances"])
	}
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
			key, stageID, projectID, a.ContainerID, a.ImageTag, a.Status, lastAlive, nullTime(a.CreatedAt))
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
			InstanceID: key,
		})
	})
	if IsInvalidData(err) || isConstraint(err) {
		return fmt.Errorf("adopt container %s: %w: %v", stale.ShortID(a.ContainerID), ErrAdoptionRefused, err)
	}
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
