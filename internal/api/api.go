// Package api is stale-exporter's HTTP surface over the cleanup service, the
// scans and the engine registry: the REST routes, the Alertmanager webhook,
// bearer-token authorization, the JSON envelope (every answer under /api is
// one), strict request reading (bodies and queries that mean one thing) and
// the request metrics.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// Config tunes the HTTP API.
type Config struct {
	// Tokens are the accepted bearer tokens, reloadable (POST /-/reload);
	// nil means no tokens file, and then every mutating endpoint is closed.
	Tokens *auth.Keyring
	// Wait bounds how long a cleanup request waits for its job.
	Wait time.Duration
	// MaxPerRequest caps a bulk cleanup.
	MaxPerRequest int
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// StoreTimeout bounds a request's wait for the latest scan or the store.
	StoreTimeout time.Duration
	// Grace is the grace before automatic cleanups, for the list.
	Grace time.Duration
}

// Scans gives the latest scan (internal/scan's Scanner), for the list of
// stale instances.
type Scans interface {
	Result(ctx context.Context) scan.Result
}

// Cleaner is the cleanup service the API serves (cleanup's Service).
type Cleaner interface {
	Request(ctx context.Context, instanceID string, trigger store.Trigger, requestedBy string, dryRun bool) (store.Job, error)
	Bulk(ctx context.Context, limit int, requestedBy string, dryRun bool) (jobs []store.Job, staleCount int, err error)
	Wait(ctx context.Context, jobs []store.Job) ([]store.Job, error)
	RecentJobs(ctx context.Context, limit int) ([]store.Job, error)
	Jobs(ctx context.Context, ids []int64) ([]store.Job, error)
	HandleAlert(ctx context.Context, alert cleanup.Alert, requestedBy string) (cleanup.AlertOutcome, error)
	Keep(ctx context.Context, instanceID string, keep stale.Keep) error
	Unkeep(ctx context.Context, instanceID, by string) error
}

// Engines is the registry of the Docker engines exporters watch.
type Engines interface {
	Engines(ctx context.Context) ([]store.Engine, error)
	ForgetEngine(ctx context.Context, name, requestedBy string) error
}

// API serves the REST endpoints and the Alertmanager webhook.
type API struct {
	svc     Cleaner
	scans   Scans
	engines Engines
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
}

// New returns the HTTP API over a cleanup service, the scans and the engine
// registry, and registers its metrics with reg.
func New(svc Cleaner, scans Scans, engines Engines, cfg Config, reg prometheus.Registerer, logger *slog.Logger) *API {
	return &API{svc: svc, scans: scans, engines: engines, cfg: cfg, logger: logger, metrics: newMetrics(reg)}
}

var (
	readRoles    = []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin}
	cleanupRoles = []auth.Role{auth.RoleOperator, auth.RoleAdmin}
	adminRoles   = []auth.Role{auth.RoleAdmin}
	webhookRoles = []auth.Role{auth.RoleAlertmanager}
)

// Register adds the API's routes to r, and makes r answer wrong methods,
// OPTIONS, odd slashes and panics under /api with JSON; NotFound answers
// unknown API paths.
func (a *API) Register(r *httprouter.Router) {
	r.GET("/api/containers/stale", a.route("list_stale", readRoles, false, a.listStale))
	r.POST("/api/containers/stale/*path", a.containerRoutes(map[string]httprouter.Handle{
		"cleanup":     a.route("cleanup_bulk", adminRoles, true, a.bulkCleanup),
		":id/cleanup": a.route("cleanup_single", cleanupRoles, true, a.cleanupOne),
		":id/keep":    a.route("keep", cleanupRoles, true, a.keep),
	}))
	r.DELETE("/api/containers/stale/*path", a.containerRoutes(map[string]httprouter.Handle{
		":id/keep": a.route("unkeep", cleanupRoles, true, a.unkeep),
	}))
	r.POST("/api/alertmanager/webhook", a.route("webhook", webhookRoles, true, a.webhook))
	r.GET("/api/cleanups", a.route("list_cleanups", readRoles, false, a.listCleanups))
	r.GET("/api/cleanups/:job", a.route("get_cleanup", readRoles, false, a.getCleanup))
	r.GET("/api/engines", a.route("list_engines", readRoles, false, a.listEngines))
	r.DELETE("/api/engines/:name", a.route("forget_engine", adminRoles, true, a.forgetEngine))
	r.POST("/-/reload", a.route("reload", adminRoles, true, a.reload))
	r.GET("/api/openapi.json", openAPI)
	// A path with a trailing or doubled slash is not redirected (an empty
	// 307): under /api it is an unknown endpoint, answered in JSON.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.GlobalOPTIONS = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !isAPI(req.URL.Path) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"allow": strings.Split(w.Header().Get("Allow"), ", ")})
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; allowed: %s", req.Method, w.Header().Get("Allow")), nil)
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		a.logger.Error("panic in handler", "path", req.URL.Path, "panic", fmt.Sprint(v))
		writeError(w, http.StatusInternalServerError, "internal error", nil)
	}
}

func isAPI(path string) bool { return path == "/api" || strings.HasPrefix(path, "/api/") }

// containerRoutes dispatches the requests of one method under
// /api/containers/stale/ by their segments: "cleanup" is the bulk cleanup,
// ":id/cleanup" and ":id/keep" one instance's. httprouter cannot hold a
// static segment beside a parameter at one depth, so no route is reached
// through another's parameter: one dispatch reads the path, and an instance
// whose id is "cleanup" is still only reached as /cleanup/cleanup.
func (a *API) containerRoutes(routes map[string]httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		segments := strings.Split(strings.TrimPrefix(ps.ByName("path"), "/"), "/")
		pattern, params := strings.Join(segments, "/"), httprouter.Params(nil)
		if len(segments) == 2 && segments[0] != "" {
			pattern, params = ":id/"+segments[1], httprouter.Params{{Key: "id", Value: segments[0]}}
		}
		if h, ok := routes[pattern]; ok {
			h(w, r, params)
			return
		}
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, nil)
	}
}

// NotFound answers unknown paths under /api with JSON and hands the rest
// to next.
func NotFound(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isAPI(r.URL.Path) {
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
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %q may not call this endpoint, which needs the role %s",
				name, strings.Join(names, " or ")), nil)
			return
		}
		h(w, r, ps, name)
	}
}

// writeStoreError answers a request whose store work failed: 503, saying
// what did not answer (a timeout names its limit and the real wait).
func (a *API) writeStoreError(w http.ResponseWriter, what string, err error) {
	a.logger.Error(what, "err", err)
	var timeout *cleanup.TimeoutError
	if errors.As(err, &timeout) {
		writeCodedError(w, http.StatusServiceUnavailable, codeTimeout, what+": "+err.Error(), nil)
		return
	}
	writeError(w, http.StatusServiceUnavailable, what+": store unavailable: "+err.Error(), nil)
}

// noQuery refuses a request to an endpoint that takes no query parameters.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if _, err := parseQuery(r.URL.RawQuery); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return false
	}
	return true
}
