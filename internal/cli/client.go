// Package cli is the operator's command line over a running exporter's API,
// the way amtool serves Alertmanager: list the stale instances, ask for
// cleanups, read the job history, keep instances, and print each answer as
// a table or as JSON.
package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/store"
)

// TokenEnv names the environment variable that may hold the API token.
const TokenEnv = "STALE_EXPORTER_TOKEN"

// Options say how to reach an exporter.
type Options struct {
	URL string
	// TokenFile holds the API token; without it, $STALE_EXPORTER_TOKEN.
	TokenFile string
	// Timeout bounds each request, the cleanup's wait on the server
	// included.
	Timeout time.Duration
	// CAFile is a PEM bundle the exporter's certificate must chain to
	// (default: the system's); InsecureSkipVerify trusts any certificate.
	CAFile             string
	InsecureSkipVerify bool
}

// Client calls one exporter's API.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client as o says.
func NewClient(o Options) (*Client, error) {
	token := os.Getenv(TokenEnv)
	if o.TokenFile != "" {
		raw, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q is not an http:// or https:// address", o.URL)
	}
	if o.Timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: give a positive duration", o.Timeout)
	}
	tlsConfig := &tls.Config{InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // the operator asked for it by name
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read --tls.ca-file: %w", err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls.ca-file %s holds no PEM certificate", o.CAFile)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	return &Client{URL: strings.TrimRight(o.URL, "/"), Token: token, HTTP: &http.Client{Timeout: o.Timeout, Transport: transport}}, nil
}

// answer is the envelope of one answer, its data left raw.
type answer struct {
	status     int
	data       json.RawMessage
	total      *int
	nextCursor string
}

// call sends one request and answers its envelope. An answer that is not a
// success is an error with the API's message, except the statuses in
// accept, whose data is answered all the same.
func (c *Client) call(ctx context.Context, method, path string, body any, accept ...int) (answer, error) {
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, fmt.Errorf("encode the request: %w", err)
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, reader)
	if err != nil {
		return answer{}, fmt.Errorf("request %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return answer{}, fmt.Errorf("reach the exporter at %s: %w", c.URL, err)
	}
	defer res.Body.Close()
	a := answer{status: res.StatusCode}
	env := api.Envelope{Data: &a.data}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		return a, fmt.Errorf("%s %s: %s, not the exporter's JSON answer", method, path, res.Status)
	}
	a.total, a.nextCursor = env.Total, env.NextCursor
	accepted := env.Success
	for _, s := range accept {
		accepted = accepted || res.StatusCode == s
	}
	if !accepted {
		return a, fmt.Errorf("%s (HTTP %d, %s)", env.Error, res.StatusCode, env.Code)
	}
	return a, nil
}

// get calls and decodes the data into out.
func (c *Client) get(ctx context.Context, method, path string, body, out any, accept ...int) (answer, error) {
	a, err := c.call(ctx, method, path, body, accept...)
	if err != nil || out == nil || len(a.data) == 0 {
		return a, err
	}
	if err := json.Unmarshal(a.data, out); err != nil {
		return a, fmt.Errorf("decode the answer of %s: %w", path, err)
	}
	return a, nil
}

// Filter picks the instances of a list.
type Filter struct {
	Project, Stage string
}

// pageSize is how many rows a page of the list asks for: the API's
// default, so that a list of thousands takes a few requests.
const pageSize = 500

// Stale answers every row of the list the filter matches, page after page,
// and the total the first page said.
func (c *Client) Stale(ctx context.Context, f Filter) ([]api.StaleContainer, int, error) {
	var rows []api.StaleContainer
	total, cursor := 0, ""
	for page := 0; ; page++ {
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		if f.Project != "" {
			q.Set("project", f.Project)
		}
		if f.Stage != "" {
			q.Set("stage", f.Stage)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var batch []api.StaleContainer
		a, err := c.get(ctx, http.MethodGet, "/api/containers/stale?"+q.Encode(), nil, &batch)
		if err != nil {
			return nil, 0, err
		}
		if page == 0 && a.total != nil {
			total = *a.total
		}
		rows = append(rows, batch...)
		if a.nextCursor == "" || len(batch) == 0 {
			return rows, max(total, len(rows)), nil
		}
		cursor = a.nextCursor
	}
}

// Outcome is the answer to the cleanup of one instance: its job, or the
// error that made it none.
type Outcome struct {
	InstanceID string       `json:"instance_id"`
	Job        *api.JobView `json:"job,omitempty"`
	Error      string       `json:"error,omitempty"`
}

// Removed reports whether the instance's container was removed (in a dry
// run: would be).
func (o Outcome) Removed() bool {
	return o.Job != nil && o.Job.State == store.JobDone && (o.Job.Result == store.ResultRemoved || o.Job.Result == store.ResultWouldRemove)
}

// Cleanup asks for the cleanup of each instance, one after the other.
func (c *Client) Cleanup(ctx context.Context, ids []string, dryRun bool) []Outcome {
	out := make([]Outcome, 0, len(ids))
	for _, id := range ids {
		path := "/api/containers/stale/" + url.PathEscape(id) + "/cleanup"
		if dryRun {
			path += "?dry_run=true"
		}
		var job api.JobView
		// 409 is a refusal, and still a job to show.
		if _, err := c.get(ctx, http.MethodPost, path, nil, &job, http.StatusConflict); err != nil {
			out = append(out, Outcome{InstanceID: id, Error: err.Error()})
			continue
		}
		if job.InstanceID == "" {
			out = append(out, Outcome{InstanceID: id, Error: "the exporter answered no job"})
			continue
		}
		out = append(out, Outcome{InstanceID: id, Job: &job})
	}
	return out
}

// CleanupAll asks for the cleanup of every stale instance, at most limit
// (0: the exporter's cap).
func (c *Client) CleanupAll(ctx context.Context, dryRun bool, limit int) (api.BulkResponse, error) {
	var res api.BulkResponse
	_, err := c.get(ctx, http.MethodPost, "/api/containers/stale/cleanup", api.BulkRequest{DryRun: dryRun, Max: limit}, &res)
	return res, err
}

// Jobs answers the latest cleanup jobs, newest first.
func (c *Client) Jobs(ctx context.Context, limit int) ([]api.JobView, error) {
	var jobs []api.JobView
	_, err := c.get(ctx, http.MethodGet, "/api/cleanups?limit="+strconv.Itoa(limit), nil, &jobs)
	return jobs, err
}

// Job answers one cleanup job.
func (c *Client) Job(ctx context.Context, id int64) (api.JobView, error) {
	var job api.JobView
	_, err := c.get(ctx, http.MethodGet, "/api/cleanups/"+strconv.FormatInt(id, 10), nil, &job)
	return job, err
}

// Keep keeps an instance from being stale until a time or forever.
func (c *Client) Keep(ctx context.Context, id, until, reason string) (api.KeepView, error) {
	var keep api.KeepView
	_, err := c.get(ctx, http.MethodPost, "/api/containers/stale/"+url.PathEscape(id)+"/keep", api.KeepRequest{Until: until, Reason: reason}, &keep)
	return keep, err
}

// Unkeep lifts an instance's keep.
func (c *Client) Unkeep(ctx context.Context, id string) error {
	_, err := c.call(ctx, http.MethodDelete, "/api/containers/stale/"+url.PathEscape(id)+"/keep", nil)
	return err
}

// Engines answers the Docker engines registered with the store.
func (c *Client) Engines(ctx context.Context) ([]api.EngineView, error) {
	var rows []api.EngineView
	_, err := c.get(ctx, http.MethodGet, "/api/engines", nil, &rows)
	return rows, err
}

// ForgetEngine removes an engine's registration (role admin; audited).
func (c *Client) ForgetEngine(ctx context.Context, name string) error {
	_, err := c.call(ctx, http.MethodDelete, "/api/engines/"+url.PathEscape(name), nil)
	return err
}
