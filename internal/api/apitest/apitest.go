// Package apitest serves the HTTP API over in-memory parts (a cleanup
// service that removes nothing and records what it was asked, a fixed scan,
// an engine registry), for the unit tests of the API and of its clients.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
)

// Cleaner is the cleanup service in memory: it answers each request with
// the job of Job, records what was asked, and removes nothing.
type Cleaner struct {
	mu       sync.Mutex
	Requests []Request
	Alerts   []cleanup.Alert
	// answered are the jobs answered, by id.
	answered map[int64]store.Job
	// Keeps are the keeps in force, by instance.
	Keeps map[string]stale.Keep
	// Job answers a request (default: done, removed, or would_remove);
	// its error fails it.
	Job func(r Request) (store.Job, error)
	// Alert answers an alert (default: recorded).
	Alert func(a cleanup.Alert) (cleanup.AlertOutcome, error)
	// Err fails the reads of jobs and the keeps, as a store that does not
	// answer would.
	Err error
}

// Request is one request the Cleaner was asked.
type Request struct {
	ID, RequestedBy string
	Trigger         store.Trigger
	DryRun          bool
}

func (c *Cleaner) Request(_ context.Context, id string, trigger store.Trigger, requestedBy string, dryRun bool) (store.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Request{ID: id, Trigger: trigger, RequestedBy: requestedBy, DryRun: dryRun}
	c.Requests = append(c.Requests, r)
	job := store.Job{ID: int64(len(c.Requests)), InstanceID: id, Trigger: trigger, RequestedBy: requestedBy, DryRun: dryRun,
		State: store.JobDone, Result: store.ResultRemoved}
	if dryRun {
		job.Result = store.ResultWouldRemove
	}
	if c.Job != nil {
		var err error
		if job, err = c.Job(r); err != nil {
			return job, err
		}
	}
	if c.answered == nil {
		c.answered = map[int64]store.Job{}
	}
	c.answered[job.ID] = job
	return job, nil
}

// Jobs are the jobs answered so far of those ids.
func (c *Cleaner) Jobs(_ context.Context, ids []int64) ([]store.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return nil, c.Err
	}
	var out []store.Job
	for _, id := range ids {
		if j, ok := c.answered[id]; ok {
			out = append(out, j)
		}
	}
	return out, nil
}

func (c *Cleaner) Bulk(ctx context.Context, limit int, requestedBy string, dryRun bool) ([]store.Job, int, error) {
	job, err := c.Request(ctx, "bulk-target", store.TriggerBulk, requestedBy, dryRun)
	if err != nil {
		return nil, 0, err
	}
	return []store.Job{job}, limit, nil
}

func (c *Cleaner) Wait(_ context.Context, jobs []store.Job) ([]store.Job, error) { return jobs, nil }

func (c *Cleaner) RecentJobs(_ context.Context, limit int) ([]store.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Job != nil {
		if _, err := c.Job(Request{}); err != nil {
			return nil, err
		}
	}
	return []store.Job{{ID: 1, State: store.JobDone, Result: store.ResultRemoved, Trigger: store.TriggerSingle}}[:min(limit, 1)], nil
}

func (c *Cleaner) HandleAlert(_ context.Context, a cleanup.Alert, _ string) (cleanup.AlertOutcome, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Alerts = append(c.Alerts, a)
	if c.Alert != nil {
		return c.Alert(a)
	}
	return cleanup.AlertOutcome{Fingerprint: a.Fingerprint, Status: a.Status, Result: cleanup.AlertRecorded}, nil
}

// Keep records a keep; an instance named "unknown" is unknown.
func (c *Cleaner) Keep(_ context.Context, id string, keep stale.Keep) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return c.Err
	}
	if id == "unknown" {
		return cleanup.ErrUnknownInstance
	}
	if c.Keeps == nil {
		c.Keeps = map[string]stale.Keep{}
	}
	c.Keeps[id] = keep
	return nil
}

// Unkeep lifts a recorded keep.
func (c *Cleaner) Unkeep(_ context.Context, id, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return c.Err
	}
	if id == "unknown" {
		return cleanup.ErrUnknownInstance
	}
	if _, ok := c.Keeps[id]; !ok {
		return store.ErrNoKeep
	}
	delete(c.Keeps, id)
	return nil
}

// Asked are the requests made so far.
func (c *Cleaner) Asked() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.Requests...)
}

// Scans answers the scan result set last.
type Scans struct {
	mu sync.Mutex
	r  scan.Result
}

// Result answers the result set last.
func (s *Scans) Result(context.Context) scan.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r
}

// Set makes r the result of the latest scan.
func (s *Scans) Set(r scan.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.r = r
}

// Engines is the engine registry in memory: Names registered, Forgot the
// removals (name by whom), Err fails every call.
type Engines struct {
	mu     sync.Mutex
	Names  map[string]bool
	Forgot []string
	Err    error
}

func (e *Engines) Engines(context.Context) ([]store.Engine, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []store.Engine
	for n := range e.Names {
		out = append(out, store.Engine{Name: n, FirstSeen: time.Unix(0, 0), LastSeen: time.Unix(60, 0)})
	}
	return out, e.Err
}

func (e *Engines) ForgetEngine(_ context.Context, name, by string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Err != nil {
		return e.Err
	}
	if !e.Names[name] {
		return store.ErrNotFound
	}
	delete(e.Names, name)
	e.Forgot = append(e.Forgot, name+" by "+by)
	return nil
}

// Server is the API over the in-memory parts, served on a loopback port,
// with a token of every role (Tokens).
type Server struct {
	t       testing.TB
	URL     string
	Cleaner *Cleaner
	Scans   *Scans
	Engines *Engines
	Reg     *prometheus.Registry
	Tokens  map[auth.Role]string
	// TokensFile is the file the tokens are read from, and reloaded.
	TokensFile string
	// Contract checks every answer Do reads against the OpenAPI document.
	Contract *Contract
	// CAFile is the PEM file of the certificate of a TLS server.
	CAFile string
	client *http.Client
}

// Options tune a Server: NoTokens serves without a tokens file; Scan is
// the scan result the list and the bulk cleanup see; Contract checks the
// answers (default: one shared by every Server of the test binary).
type Options struct {
	NoTokens bool
	Scan     scan.Result
	Contract *Contract
	// TLS serves HTTPS, with a certificate CAFile holds.
	TLS bool
}

var shared struct {
	once     sync.Once
	contract *Contract
	err      error
}

// sharedContract is the document loaded once for every Server.
func sharedContract() (*Contract, error) {
	shared.once.Do(func() { shared.contract, shared.err = LoadContract() })
	return shared.contract, shared.err
}

// New serves the API until the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, Cleaner: &Cleaner{}, Scans: &Scans{r: opts.Scan}, Engines: &Engines{Names: map[string]bool{"host-a": true}}, Reg: prometheus.NewRegistry(),
		Contract: opts.Contract}
	if s.Contract == nil {
		var err error
		if s.Contract, err = sharedContract(); err != nil {
			t.Fatal(err)
		}
	}
	var tokens *auth.Keyring
	if !opts.NoTokens {
		s.TokensFile, s.Tokens = testenv.Tokens(t, t.TempDir(), auth.Roles...)
		var err error
		if tokens, err = auth.OpenKeyring(s.TokensFile); err != nil {
			t.Fatal(err)
		}
	}
	router := httprouter.New()
	api.New(s.Cleaner, s.Scans, s.Engines, api.Config{Tokens: tokens, Wait: time.Second, MaxPerRequest: 10,
		MaxBodyBytes: 64 << 10, StoreTimeout: time.Second}, s.Reg, slog.New(slog.NewTextHandler(io.Discard, nil))).Register(router)
	router.NotFound = api.NotFound(http.NotFoundHandler())
	srv := httptest.NewUnstartedServer(router)
	// A client that refuses the certificate is a test case, not news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.client = http.DefaultClient
	if opts.TLS {
		srv.StartTLS()
		s.client = srv.Client()
		s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
		cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.WriteFile(s.CAFile, cert, 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Answer is an answer of the API: its status and headers, and its JSON
// envelope with the data left raw.
type Answer struct {
	Status int
	Header http.Header
	// Closed: the server said Connection: close.
	Closed  bool
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   string          `json:"error"`
	Code    string          `json:"code"`
	// Total and NextCursor page a list.
	Total      *int   `json:"total"`
	NextCursor string `json:"next_cursor"`
}

// Do sends a request with the token of role ("" for none) and decodes the
// envelope, failing the test if the answer is not one, or not as the
// OpenAPI document says.
func (s *Server) Do(method, path string, role auth.Role, contentType, body string) Answer {
	s.t.Helper()
	res, raw := s.Raw(method, path, role, contentType, body)
	var a Answer
	if err := json.Unmarshal(raw, &a); err != nil || res.Header.Get("Content-Type") != "application/json" {
		s.t.Fatalf("%s %s: %d, not a JSON envelope (%s): %s", method, path, res.StatusCode, res.Header.Get("Content-Type"), raw)
	}
	if (res.StatusCode >= 400) != (a.Error != "") || (res.StatusCode >= 400) == a.Success || (res.StatusCode >= 400) != (a.Code != "") {
		s.t.Fatalf("%s %s: status %d with success=%v error=%q code=%q", method, path, res.StatusCode, a.Success, a.Error, a.Code)
	}
	a.Status, a.Header, a.Closed = res.StatusCode, res.Header, res.Close
	return a
}

// Raw sends a request as Do does and answers the response (its body read)
// and the body, failing the test if the answer is not as the OpenAPI
// document says.
func (s *Server) Raw(method, path string, role auth.Role, contentType, body string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader([]byte(body)))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+s.Tokens[role])
	}
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read the answer: %v", method, path, err)
	}
	if _, err := s.Contract.Check(req, res.StatusCode, res.Header, raw); err != nil {
		s.t.Fatal(err)
	}
	return res, raw
}

// Counter reads a counter of the API's registry (0 when it has none).
func (s *Server) Counter(name string, labels map[string]string) float64 {
	s.t.Helper()
	families, err := s.Reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// ErrStore is the error of a store that does not answer.
var ErrStore = errors.New("connection refused (fake store)")
