// Package api is stale-exporter's HTTP surface over the cleanup service and
// the scans: the REST routes, the Alertmanager webhook, bearer-token
// authorization, the JSON envelope, strict body decoding and the request
// metrics.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Config tunes the HTTP API.
type Config struct {
	// auth.Tokens are the accepted bearer tokens; nil means no tokens file, and
	// then every mutating endpoint is closed.
	Tokens *auth.Tokens
	// Wait bounds how long a cleanup request waits for its job.
	Wait time.Duration
	// MaxPerRequest caps a bulk cleanup.
	MaxPerRequest int
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// StoreTimeout bounds a request's wait for the latest scan.
	StoreTimeout time.Duration
}

// Scans gives the latest scan, for the list of stale instances.
type Scans interface {
	Result(ctx context.Context) collector.Result
}

// API serves the REST endpoints and the Alertmanager webhook.
type API struct {
	svc     *cleanup.Service
	scans   Scans
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
}

// New returns the HTTP API over a cleanup service and registers its metrics
// with reg.
func New(svc *cleanup.Service, scans Scans, cfg Config, reg prometheus.Registerer, logger *slog.Logger) *API {
	return &API{svc: svc, scans: scans, cfg: cfg, logger: logger, metrics: newMetrics(reg)}
}

var (
	readRoles    = []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin}
	cleanupRoles = []auth.Role{auth.RoleOperator, auth.RoleAdmin}
	bulkRoles    = []auth.Role{auth.RoleAdmin}
	webhookRoles = []auth.Role{auth.RoleAlertmanager}
)

// Register adds the API's routes to r, and makes r answer wrong methods and
// panics with JSON; NotFound answers unknown API paths.
func (a *API) Register(r *httprouter.Router) {
	r.GET("/api/containers/stale", a.route("list_stale", readRoles, false, a.listStale))
	// httprouter cannot hold both /stale/cleanup and /stale/:id/cleanup, so
	// the bulk route is the :id route with the id "cleanup".
	r.POST("/api/containers/stale/:id", a.route("cleanup_bulk", bulkRoles, true, a.bulkCleanup))
	r.POST("/api/containers/stale/:id/cleanup", a.route("cleanup_single", cleanupRoles, true, a.cleanupOne))
	r.POST("/api/alertmanager/webhook", a.route("webhook", webhookRoles, true, a.webhook))
	r.GET("/api/cleanups", a.route("list_cleanups", readRoles, false, a.listCleanups))
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; allowed: %s", req.Method, w.Header().Get("Allow")), nil)
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		a.logger.Error("panic in handler", "path", req.URL.Path, "panic", fmt.Sprint(v))
		writeError(w, http.StatusInternalServerError, "internal error", nil)
	}
}

// NotFound answers unknown paths under /api/ with JSON and hands the rest
// to next.
func NotFound(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handler serves one endpoint for the caller named by its token.
type handler func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string)

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// route authorizes and counts the requests of one endpoint, refusals
// included, in stale_exporter_api_requests_total{endpoint, code}.
func (a *API) route(endpoint string, roles []auth.Role, mutating bool, h handler) httprouter.Handle {
	inner := a.authorize(roles, mutating, h)
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		inner(rec, r, ps)
		a.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(rec.status)).Inc()
	}
}

// authorize admits a request whose bearer token has one of the roles. With
// no tokens file, read endpoints are open and mutating ones closed.
func (a *API) authorize(roles []auth.Role, mutating bool, h handler) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		if a.cfg.Tokens == nil {
			if mutating {
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusForbidden, "cleanup is disabled: no tokens file is configured (--api.tokens-file)", nil)
				return
			}
			h(w, r, ps, "anonymous")
			return
		}
		name, role, err := a.cfg.Tokens.Authenticate(r.Header.Get("Authorization"))
		if err != nil {
			// The body of an unauthenticated request is never read, and
			// closing keeps the server from draining it for keep-alive.
			w.Header().Set("Connection", "close")
			w.Header().Set("WWW-Authenticate", `Bearer realm="stale-exporter"`)
			writeError(w, http.StatusUnauthorized, err.Error(), nil)
			return
		}
		if !slices.Contains(roles, role) {
			w.Header().Set("Connection", "close")
			names := make([]string, len(roles))
			for i, r := range roles {
				names[i] = string(r)
			}
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %q has role %s; this endpoint needs %s",
				name, role, strings.Join(names, " or ")), nil)
			return
		}
		h(w, r, ps, name)
	}
}

// envelope is the platform's API response shape.
type envelope struct {
	Success bool   `json:"success"`
	Data    any    `json:"data,omitempty"`
	Error   string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(envelope{Success: true, Data: data})
}

func writeError(w http.ResponseWriter, status int, msg string, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(envelope{Success: false, Data: data, Error: msg})
}

// StaleContainer is one row of GET /api/containers/stale (clients read it too).
type StaleContainer struct {
	InstanceID         string  `json:"instance_id"`
	ContainerID        string  `json:"container_id"`
	ProjectName        string  `json:"project_name"`
	StageName          string  `json:"stage_name"`
	ImageTag           string  `json:"image_tag"`
	DockerState        string  `json:"docker_state"`
	LastAlive          string  `json:"last_alive"`
	DaysSinceLastAlive float64 `json:"days_since_last_alive"`
}

func (a *API) listStale(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ string) {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.StoreTimeout)
	defer cancel()
	res := a.scans.Result(ctx)
	if res.Snapshot == nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("no recent successful scan: %v", res.Err), nil)
		return
	}
	out := []StaleContainer{}
	for _, o := range res.Snapshot.Observations {
		if !o.Verdict.Stale {
			continue
		}
		days := res.Snapshot.ScannedAt.Sub(o.Verdict.LastAlive).Hours() / 24
		out = append(out, StaleContainer{
			InstanceID:         o.Instance.ID,
			ContainerID:        o.Instance.ContainerID,
			ProjectName:        o.Instance.ProjectName,
			StageName:          o.Instance.StageName,
			ImageTag:           o.Instance.ImageTag,
			DockerState:        o.Container.DockerState(),
			LastAlive:          o.Verdict.LastAlive.UTC().Format(time.RFC3339),
			DaysSinceLastAlive: float64(int(days*100)) / 100,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DaysSinceLastAlive > out[j].DaysSinceLastAlive })
	writeJSON(w, http.StatusOK, out)
}

// JobView is a cleanup job as the API shows it (clients read it too).
type JobView struct {
	JobID       int64  `json:"job_id,omitempty"`
	InstanceID  string `json:"instance_id"`
	ContainerID string `json:"container_id"`
	Trigger     string `json:"trigger"`
	RequestedBy string `json:"requested_by"`
	DryRun      bool   `json:"dry_run"`
	State       string `json:"state"`
	Result      string `json:"result,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Attempts    int    `json:"attempts"`
	CreatedAt   string `json:"created_at"`
	FinishedAt  string `json:"finished_at,omitempty"`
}

func viewJob(j store.Job) JobView {
	v := JobView{
		JobID: j.ID, InstanceID: j.InstanceID, ContainerID: j.ContainerID, Trigger: j.Trigger,
		RequestedBy: j.RequestedBy, DryRun: j.ID == 0, State: j.State, Result: j.Result, Reason: j.Reason,
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

// ParseDryRun reads the dry_run query parameter.
func ParseDryRun(raw string) (bool, error) {
	if raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, fmt.Errorf("dry_run must be true or false, got %q", raw)
	}
	return b, nil
}

func (a *API) cleanupOne(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string) {
	id := ps.ByName("id")
	if !stale.IsUUID(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("instance id %q is not a UUID", id), nil)
		return
	}
	dryRun, err := ParseDryRun(r.URL.Query().Get("dry_run"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	job, err := a.svc.Request(r.Context(), id, cleanup.TriggerSingle, requestedBy, dryRun)
	if errors.Is(err, cleanup.ErrUnknownInstance) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no instance %s", id), nil)
		return
	}
	if err != nil {
		a.logger.Error("request cleanup", "instance_id", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not record the cleanup request: store unavailable", nil)
		return
	}
	jobs, err := a.wait(r.Context(), []store.Job{job})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "could not read the cleanup job: store unavailable", nil)
		return
	}
	job = jobs[0]
	view := viewJob(job)
	switch {
	case job.State != store.JobDone:
		writeJSON(w, http.StatusAccepted, view)
	case job.Result == store.ResultSkipped:
		writeError(w, http.StatusConflict, job.Reason, view)
	case job.Result == store.ResultFailed:
		writeError(w, http.StatusInternalServerError, job.Reason, view)
	default:
		writeJSON(w, http.StatusOK, view)
	}
}

func (a *API) wait(ctx context.Context, jobs []store.Job) ([]store.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Wait)
	defer cancel()
	return a.svc.Wait(ctx, jobs)
}

// BulkRequest is the body of POST /api/containers/stale/cleanup.
type BulkRequest struct {
	DryRun bool `json:"dry_run"`
	// Max caps how many instances this call cleans; 0 means the server's cap.
	Max int `json:"max"`
}

// ParseBulkRequest decodes and validates a bulk body; an empty body asks for
// the defaults. Unknown fields, duplicate keys, nulls and wrong types are
// refused: nothing ambiguous may turn a dry run into a real one.
func ParseBulkRequest(body []byte, maxPerRequest int) (BulkRequest, error) {
	var req BulkRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := decodeStrict(body, &req, false); err != nil {
			return BulkRequest{}, err
		}
	}
	switch {
	case req.Max < 0:
		return req, fmt.Errorf("max must not be negative, got %d", req.Max)
	case req.Max > maxPerRequest:
		return req, fmt.Errorf("max %d exceeds the per-request cap of %d", req.Max, maxPerRequest)
	case req.Max == 0:
		req.Max = maxPerRequest
	}
	return req, nil
}

// BulkResponse is the answer of a bulk cleanup.
type BulkResponse struct {
	Stale     int       `json:"stale"`
	Requested int       `json:"requested"`
	Results   []JobView `json:"results"`
}

func (a *API) bulkCleanup(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string) {
	if ps.ByName("id") != "cleanup" {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, nil)
		return
	}
	body, status, err := readBody(w, r, a.cfg.MaxBodyBytes, true)
	if err != nil {
		writeError(w, status, err.Error(), nil)
		return
	}
	req, err := ParseBulkRequest(body, a.cfg.MaxPerRequest)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	if q := r.URL.Query().Get("dry_run"); q != "" {
		if req.DryRun, err = ParseDryRun(q); err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), nil)
			return
		}
	}
	jobs, staleCount, err := a.svc.Bulk(r.Context(), req.Max, requestedBy, req.DryRun)
	if err != nil {
		a.logger.Error("bulk cleanup", "err", err)
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
		return
	}
	if jobs, err = a.wait(r.Context(), jobs); err != nil {
		writeError(w, http.StatusServiceUnavailable, "could not read the cleanup jobs: store unavailable", nil)
		return
	}
	writeJSON(w, http.StatusOK, BulkResponse{Stale: staleCount, Requested: len(jobs), Results: viewJobs(jobs)})
}

func (a *API) listCleanups(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ string) {
	limit := 100
	if raw := r.URL.Query().Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to 1000, got %q", raw), nil)
			return
		}
		limit = n
	}
	jobs, err := a.svc.RecentJobs(r.Context(), limit)
	if err != nil {
		a.logger.Error("list cleanups", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store unavailable", nil)
		return
	}
	writeJSON(w, http.StatusOK, viewJobs(jobs))
}

// readBody reads a JSON request body of at most limit bytes. It answers the
// status to send with its error: 400 for a wrong content type, 413 for a
// body too large.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, optional bool) ([]byte, int, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" && optional && r.ContentLength <= 0 {
		return nil, 0, nil
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return nil, http.StatusBadRequest, fmt.Errorf("content type must be application/json, got %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", limit)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	return body, 0, nil
}
