// Package fleet is a simulated fleet for load tests: a Docker engine that
// speaks the part of the Engine API the exporter uses (_ping, version,
// info, the container list, inspect, events, removal) over a unix socket,
// holding many containers whose states change at a set rate. It is for
// load only: real Docker stays the proof of correctness.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// apiVersion is the Engine API version the engine says it speaks.
const apiVersion = "1.51"

// Container is one simulated container.
type Container struct {
	ID, Name, Image, State string
	Labels                 map[string]string
	Created                time.Time
	StartedAt, FinishedAt  time.Time
}

// event is one container event, as the engine streams it.
type event struct {
	Type     string `json:"Type"`
	Action   string `json:"Action"`
	Actor    actor  `json:"Actor"`
	Scope    string `json:"scope"`
	Time     int64  `json:"time"`
	TimeNano int64  `json:"timeNano"`
}

type actor struct {
	ID         string            `json:"ID"`
	Attributes map[string]string `json:"Attributes"`
}

// Engine is a simulated Docker engine.
type Engine struct {
	Name string

	mu         sync.Mutex
	containers map[string]*Container
	order      []string
	// log holds the recent events, for a stream opened with since=.
	log         []event
	subscribers map[chan event]bool

	// Calls counts the API calls by endpoint (list, inspect, events,
	// delete, ping, info, version, other).
	calls sync.Map
	srv   *http.Server
}

// NewEngine returns an engine named name holding no container.
func NewEngine(name string) *Engine {
	return &Engine{Name: name, containers: map[string]*Container{}, subscribers: map[chan event]bool{}}
}

// ID is a new random container id.
func ID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Add adds a container, as it stands (no event: a fleet is seeded before
// it is watched).
func (e *Engine) Add(c Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cp := c
	e.containers[c.ID] = &cp
	e.order = append(e.order, c.ID)
}

// Churn changes the state of a random container every interval until ctx
// ends: a running one dies, a stopped one starts.
func (e *Engine) Churn(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.toggleRandom()
		}
	}
}

func (e *Engine) toggleRandom() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.order) == 0 {
		return
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(e.order))))
	e.toggleLocked(e.order[n.Int64()])
}

// Toggle stops a running container, or starts a stopped one.
func (e *Engine) Toggle(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.toggleLocked(id)
}

func (e *Engine) toggleLocked(id string) {
	c, ok := e.containers[id]
	if !ok {
		return
	}
	now := time.Now()
	if c.State == "running" {
		c.State, c.FinishedAt = "exited", now
		e.emitLocked(c, "die", now)
	} else {
		c.State, c.StartedAt = "running", now
		e.emitLocked(c, "start", now)
	}
}

// maxLog bounds the events kept for since=.
const maxLog = 10000

func (e *Engine) emitLocked(c *Container, action string, at time.Time) {
	ev := event{Type: "container", Action: action, Actor: actor{ID: c.ID, Attributes: c.Labels}, Scope: "local", Time: at.Unix(), TimeNano: at.UnixNano()}
	e.log = append(e.log, ev)
	if len(e.log) > maxLog {
		e.log = e.log[len(e.log)-maxLog:]
	}
	for ch := range e.subscribers {
		select {
		case ch <- ev:
		default: // a subscriber that does not read loses events, as with Docker
		}
	}
}

// Calls answers the calls counted by endpoint.
func (e *Engine) Calls() map[string]int64 {
	out := map[string]int64{}
	e.calls.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (e *Engine) count(endpoint string) {
	v, _ := e.calls.LoadOrStore(endpoint, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Serve serves the engine on a unix socket at path until Close.
func (e *Engine) Serve(path string) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(ln) }()
	return nil
}

// Close stops serving.
func (e *Engine) Close() error {
	if e.srv == nil {
		return nil
	}
	return e.srv.Close()
}

var versioned = regexp.MustCompile(`^/v[0-9.]+`)

// ServeHTTP answers the Engine API.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := versioned.ReplaceAllString(r.URL.Path, "")
	w.Header().Set("Api-Version", apiVersion)
	w.Header().Set("Ostype", "linux")
	switch {
	case path == "/_ping":
		e.count("ping")
		_, _ = w.Write([]byte("OK"))
	case path == "/version":
		e.count("version")
		writeJSON(w, map[string]any{"ApiVersion": apiVersion, "MinAPIVersion": "1.24", "Version": "28.0.0-sim", "Os": "linux", "Arch": "amd64"})
	case path == "/info":
		e.count("info")
		writeJSON(w, map[string]any{"Name": e.Name, "ID": e.Name, "OperatingSystem": "simulated"})
	case path == "/containers/json":
		e.count("list")
		e.list(w, r)
	case path == "/events":
		e.count("events")
		e.events(w, r)
	case path == "/system/df":
		e.count("other")
		writeJSON(w, map[string]any{"Volumes": []any{}})
	case strings.HasPrefix(path, "/containers/") && strings.HasSuffix(path, "/json") && r.Method == http.MethodGet:
		e.count("inspect")
		e.inspect(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/containers/"), "/json"))
	case strings.HasPrefix(path, "/containers/") && r.Method == http.MethodDelete:
		e.count("delete")
		e.remove(w, strings.TrimPrefix(path, "/containers/"))
	default:
		e.count("other")
		http.Error(w, `{"message":"not simulated"}`, http.StatusNotFound)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, ref string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = fmt.Fprintf(w, `{"message":"No such container: %s"}`, ref)
}

// filters reads the filters query parameter: {"label": {"k": true}, ...}.
func filters(r *http.Request) map[string][]string {
	out := map[string][]string{}
	var raw map[string]map[string]bool
	if err := json.Unmarshal([]byte(r.URL.Query().Get("filters")), &raw); err != nil {
		return out
	}
	for k, vs := range raw {
		for v := range vs {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// labelled reports whether labels match every label filter.
func labelled(labels map[string]string, want []string) bool {
	for _, f := range want {
		k, v, exact := strings.Cut(f, "=")
		got, ok := labels[k]
		if !ok || exact && got != v {
			return false
		}
	}
	return true
}

func (e *Engine) list(w http.ResponseWriter, r *http.Request) {
	want := filters(r)["label"]
	e.mu.Lock()
	out := make([]map[string]any, 0, len(e.containers))
	for _, id := range e.order {
		c, ok := e.containers[id]
		if !ok || !labelled(c.Labels, want) {
			continue
		}
		out = append(out, map[string]any{"Id": c.ID, "Names": []string{"/" + c.Name}, "Image": c.Image, "State": c.State,
			"Status": c.State, "Labels": c.Labels, "Created": c.Created.Unix()})
	}
	e.mu.Unlock()
	writeJSON(w, out)
}

// findLocked finds a container by full id, unique prefix or name.
func (e *Engine) findLocked(ref string) *Container {
	if c, ok := e.containers[ref]; ok {
		return c
	}
	var found *Container
	for _, c := range e.containers {
		if c.Name == ref || strings.HasPrefix(c.ID, ref) && len(ref) >= 12 {
			if found != nil {
				return nil
			}
			found = c
		}
	}
	return found
}

// dockerTime is a time as the engine writes it: the zero year for never.
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (e *Engine) inspect(w http.ResponseWriter, r *http.Request, ref string) {
	e.mu.Lock()
	c := e.findLocked(ref)
	var body map[string]any
	if c != nil {
		body = map[string]any{"Id": c.ID, "Name": "/" + c.Name, "Image": "sha256:" + strings.Repeat("0", 64), "Created": dockerTime(c.Created),
			"State":  map[string]any{"Status": c.State, "Running": c.State == "running", "StartedAt": dockerTime(c.StartedAt), "FinishedAt": dockerTime(c.FinishedAt)},
			"Config": map[string]any{"Image": c.Image, "Labels": c.Labels}, "Mounts": []any{}}
		if r.URL.Query().Get("size") == "1" || r.URL.Query().Get("size") == "true" {
			body["SizeRw"] = 4096
		}
	}
	e.mu.Unlock()
	if c == nil {
		notFound(w, ref)
		return
	}
	writeJSON(w, body)
}

func (e *Engine) remove(w http.ResponseWriter, ref string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.findLocked(ref)
	switch {
	case c == nil:
		notFound(w, ref)
	case c.State == "running":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"message":"cannot remove a running container"}`))
	default:
		delete(e.containers, c.ID)
		e.emitLocked(c, "destroy", time.Now())
		w.WriteHeader(http.StatusNoContent)
	}
}

// events streams the events matching the filters: those since since= from
// the log, then the new ones, until the client goes.
func (e *Engine) events(w http.ResponseWriter, r *http.Request) {
	f := filters(r)
	match := func(ev event) bool {
		if types := f["type"]; len(types) > 0 && !slices.Contains(types, ev.Type) {
			return false
		}
		if actions := f["event"]; len(actions) > 0 && !slices.Contains(actions, ev.Action) {
			return false
		}
		return labelled(ev.Actor.Attributes, f["label"])
	}
	var since int64
	if raw := r.URL.Query().Get("since"); raw != "" {
		secs, frac, _ := strings.Cut(raw, ".")
		s, _ := strconv.ParseInt(secs, 10, 64)
		n, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		since = s*1e9 + n
	}
	ch := make(chan event, 1024)
	e.mu.Lock()
	var backlog []event
	if since > 0 {
		for _, ev := range e.log {
			if ev.TimeNano >= since {
				backlog = append(backlog, ev)
			}
		}
	}
	e.subscribers[ch] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.subscribers, ch)
		e.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	send := func(ev event) bool {
		if !match(ev) {
			return true
		}
		if err := enc.Encode(ev); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	for _, ev := range backlog {
		if !send(ev) {
			return
		}
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			if !send(ev) {
				return
			}
		}
	}
}
