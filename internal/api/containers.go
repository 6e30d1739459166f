package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// StaleContainer is one row of GET /api/containers/stale (clients read it
// too): a stale instance, or one kept from being stale (marked, so that a UI
// can show and lift the keep), or one whose labels do not parse.
type StaleContainer struct {
	InstanceID         string  `json:"instance_id"`
	ContainerID        string  `json:"container_id"`
	ProjectName        string  `json:"project_name"`
	StageName          string  `json:"stage_name"`
	ImageTag           string  `json:"image_tag"`
	DockerState        string  `json:"docker_state"`
	LastAlive          string  `json:"last_alive"`
	DaysSinceLastAlive float64 `json:"days_since_last_alive"`
	Stale              bool    `json:"stale"`
	// Reason says why it is listed while not stale.
	Reason string `json:"reason,omitempty"`
	// StaleSince is when it became stale; AutomaticCleanupFrom the earliest
	// an automatic cleanup may remove it (after the grace), should its
	// stage's rule ask for one.
	StaleSince           string `json:"stale_since,omitempty"`
	AutomaticCleanupFrom string `json:"automatic_cleanup_from,omitempty"`
	// KeptUntil (a time or "forever"), KeptBy and KeepReason mark a keep.
	KeptUntil  string `json:"kept_until,omitempty"`
	KeptBy     string `json:"kept_by,omitempty"`
	KeepReason string `json:"keep_reason,omitempty"`
	// ReclaimableBytes is the disk the stale container holds, once measured.
	ReclaimableBytes *int64 `json:"reclaimable_bytes,omitempty"`
}

// listed reports whether an observation is a row of the list.
func listed(o stale.Observation) bool {
	return o.Verdict.Stale || o.Verdict.Keep != nil || o.Verdict.Reason.Unparsable()
}

func (a *API) row(o stale.Observation, scannedAt time.Time) StaleContainer {
	v := o.Verdict
	days := scannedAt.Sub(v.LastAlive).Hours() / 24
	row := StaleContainer{
		InstanceID:         o.Instance.ID,
		ContainerID:        o.Instance.ContainerID,
		ProjectName:        o.Instance.ProjectName,
		StageName:          o.Instance.StageName,
		ImageTag:           o.Instance.ImageTag,
		DockerState:        o.Container.DockerState(),
		LastAlive:          v.LastAlive.UTC().Format(time.RFC3339),
		DaysSinceLastAlive: float64(int(days*100)) / 100,
		Stale:              v.Stale,
	}
	if v.Stale {
		row.StaleSince = v.StaleSince.UTC().Format(time.RFC3339)
		row.AutomaticCleanupFrom = v.StaleSince.Add(a.cfg.Grace).UTC().Format(time.RFC3339)
	} else {
		row.Reason = v.Explain()
	}
	if k := v.Keep; k != nil {
		row.KeptUntil, row.KeptBy, row.KeepReason = keptUntil(*k), k.By, k.Reason
	}
	if o.Measured {
		bytes := o.Reclaimable
		row.ReclaimableBytes = &bytes
	}
	return row
}

// listStale answers a page of the list: stale instances first, the longest
// since last alive first, then the kept ones and those whose labels do not
// parse; total counts every row of the query, next_cursor asks for the
// next page.
func (a *API) listStale(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ string) {
	q, err := ParseListQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.StoreTimeout)
	defer cancel()
	res := a.scans.Result(ctx)
	if res.Snapshot == nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("no recent successful scan: %v", res.Err), nil)
		return
	}
	var rows []StaleContainer
	var keys []pageKey
	for _, o := range res.Snapshot.Observations {
		if listed(o) {
			rows = append(rows, a.row(o, res.Snapshot.ScannedAt))
			keys = append(keys, pageKey{Stale: o.Verdict.Stale, LastAlive: o.Verdict.LastAlive, InstanceID: o.Instance.ID})
		}
	}
	out, total, next := page(rows, keys, q)
	writePage(w, out, total, next)
}

// JobView is a cleanup job as the API shows it (clients read it too).
type JobView struct {
	JobID       int64           `json:"job_id,omitempty"`
	InstanceID  string          `json:"instance_id"`
	ContainerID string          `json:"container_id"`
	Trigger     store.Trigger   `json:"trigger"`
	RequestedBy string          `json:"requested_by"`
	DryRun      bool            `json:"dry_run"`
	State       store.JobState  `json:"state"`
	Result      store.JobResult `json:"result,omitempty"`
	Code        string          `json:"code,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Attempts    int             `json:"attempts"`
	CreatedAt   string          `json:"created_at"`
	FinishedAt  string          `json:"finished_at,omitempty"`
}

func viewJob(j store.Job) JobView {
	v := JobView{
		JobID: j.ID, InstanceID: j.InstanceID, ContainerID: j.ContainerID, Trigger: j.Trigger,
		RequestedBy: j.RequestedBy, DryRun: j.DryRun, State: j.State, Result: j.Result, Code: j.Code, Reason: j.Reason,
		Attempts: j.Attempts, CreatedAt: j.CreatedAt.UTC().Format(time.RFC3339Nano),
	}
	if !j.FinishedAt.IsZero() {
		v.FinishedAt = j.FinishedAt.UTC().Format(time.RFC3339Nano)
	}
	return v
}

func viewJobs(jobs []store.Job) []JobView {
	out := make([]JobView, len(jobs))
	for i, j := range jobs {
		out[i] = viewJob(j)
	}
	return out
}

func (a *API) cleanupOne(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string) {
	id := ps.ByName("id")
	if err := stale.ValidID(id); err != nil {
		writeError(w, http.StatusBadRequest, "instance "+err.Error(), nil)
		return
	}
	body, status, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, status, err.Error(), nil)
		return
	}
	dryRun, err := ParseSingleRequest(body, r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	job, err := a.svc.Request(r.Context(), id, store.TriggerSingle, requestedBy, dryRun)
	if errors.Is(err, cleanup.ErrUnknownInstance) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no instance %s", id), nil)
		return
	}
	if err != nil {
		a.writeStoreError(w, "could not record the cleanup request", err)
		return
	}
	jobs, err := a.wait(r.Context(), []store.Job{job})
	if err != nil {
		a.writeStoreError(w, "could not read the cleanup job", err)
		return
	}
	job = jobs[0]
	view := viewJob(job)
	switch {
	case job.State != store.JobDone:
		// Still running or retrying: where to read how it ends.
		w.Header().Set("Location", jobPath(job.ID))
		writeJSON(w, http.StatusAccepted, view)
	case job.Result == store.ResultSkipped:
		writeCodedError(w, http.StatusConflict, job.Code, job.Reason, view)
	case job.Result == store.ResultFailed:
		// The engine or the store could not be reached after the retries,
		// or a setting keeps anything from being judged: unavailable.
		writeCodedError(w, http.StatusServiceUnavailable, job.Code, job.Reason, view)
	default:
		writeJSON(w, http.StatusOK, view)
	}
}

func (a *API) wait(ctx context.Context, jobs []store.Job) ([]store.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Wait)
	defer cancel()
	return a.svc.Wait(ctx, jobs)
}

// BulkResponse is the answer of a bulk cleanup.
type BulkResponse struct {
	Stale     int       `json:"stale"`
	Requested int       `json:"requested"`
	Results   []JobView `json:"results"`
}

func (a *API) bulkCleanup(w http.ResponseWriter, r *http.Request, _ httprouter.Params, requestedBy string) {
	body, status, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, status, err.Error(), nil)
		return
	}
	req, err := ParseBulkRequest(body, r.URL.RawQuery, a.cfg.MaxPerRequest)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	jobs, staleCount, err := a.svc.Bulk(r.Context(), req.Max, requestedBy, req.DryRun)
	if err != nil {
		a.writeStoreError(w, "bulk cleanup", err)
		return
	}
	if jobs, err = a.wait(r.Context(), jobs); err != nil {
		a.writeStoreError(w, "could not read the cleanup jobs", err)
		return
	}
	writeJSON(w, http.StatusOK, BulkResponse{Stale: staleCount, Requested: len(jobs), Results: viewJobs(jobs)})
}

// jobPath is where a job is read.
func jobPath(id int64) string { return "/api/cleanups/" + strconv.FormatInt(id, 10) }

// getCleanup answers one job, as a 202's Location names it.
func (a *API) getCleanup(w http.ResponseWriter, r *http.Request, ps httprouter.Params, _ string) {
	if !noQuery(w, r) {
		return
	}
	raw := ps.ByName("job")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("job id %q is not a positive number", raw), nil)
		return
	}
	jobs, err := a.svc.Jobs(r.Context(), []int64{id})
	if err != nil {
		a.writeStoreError(w, "could not read the cleanup job", err)
		return
	}
	if len(jobs) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no cleanup job %d", id), nil)
		return
	}
	writeJSON(w, http.StatusOK, viewJob(jobs[0]))
}

func (a *API) listCleanups(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ string) {
	query, err := parseQuery(r.URL.RawQuery, "limit")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	limit := 100
	if raw, ok := query["limit"]; ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to 1000, got %q", raw), nil)
			return
		}
		limit = n
	}
	jobs, err := a.svc.RecentJobs(r.Context(), limit)
	if err != nil {
		a.writeStoreError(w, "list cleanups", err)
		return
	}
	writeJSON(w, http.StatusOK, viewJobs(jobs))
}
