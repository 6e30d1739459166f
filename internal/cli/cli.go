// Package cli is the operator's command line over a running exporter's API,
// the way amtool serves Alertmanager: list the stale instances, ask for
// cleanups and print each result.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// TokenEnv names the environment variable that may hold the API token.
const TokenEnv = "STALE_EXPORTER_TOKEN"

// Client calls one exporter's API.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client of the exporter at url, with the token read from
// tokenFile, else from $STALE_EXPORTER_TOKEN.
func NewClient(url, tokenFile string) (*Client, error) {
	token := os.Getenv(TokenEnv)
	if tokenFile != "" {
		raw, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	}
	return &Client{URL: strings.TrimRight(url, "/"), Token: token, HTTP: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// call sends one request and decodes the envelope's data into out. An
// answer that is not a success is an error with the API's message, except
// the statuses in accept, whose data is decoded all the same.
func (c *Client) call(ctx context.Context, method, path string, body any, out any, accept ...int) (int, error) {
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, reader)
	if err != nil {
		return 0, fmt.Errorf("request %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reach the exporter at %s: %w", c.URL, errors.Unwrap(err))
	}
	defer res.Body.Close()
	var data json.RawMessage
	env := api.Envelope{Data: &data}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		return res.StatusCode, fmt.Errorf("%s %s: %s, not the exporter's JSON answer", method, path, res.Status)
	}
	accepted := env.Success
	for _, s := range accept {
		accepted = accepted || res.StatusCode == s
	}
	if !accepted {
		return res.StatusCode, fmt.Errorf("%s (HTTP %d)", env.Error, res.StatusCode)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return res.StatusCode, fmt.Errorf("decode answer of %s: %w", path, err)
		}
	}
	return res.StatusCode, nil
}

// List prints the stale instances as a table.
func (c *Client) List(ctx context.Context, w io.Writer) error {
	var rows []api.StaleContainer
	if _, err := c.call(ctx, http.MethodGet, "/api/containers/stale", nil, &rows); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tPROJECT\tSTAGE\tTAG\tCONTAINER\tSTATE\tDAYS SINCE LAST ALIVE\tNOTE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.12s\t%s\t%.2f\t%s\n", r.InstanceID, r.ProjectName, r.StageName, r.ImageTag,
			r.ContainerID, r.DockerState, r.DaysSinceLastAlive, note(r))
	}
	return tw.Flush()
}

// note says what is next for a row of the list.
func note(r api.StaleContainer) string {
	switch {
	case r.KeptUntil != "":
		return fmt.Sprintf("kept until %s by %s: %s", r.KeptUntil, r.KeptBy, r.KeepReason)
	case !r.Stale:
		return r.Reason
	}
	return "stale since " + r.StaleSince
}

func printJob(w io.Writer, j api.JobView) {
	outcome := string(j.Result)
	if outcome == "" {
		outcome = string(j.State) + " (still in progress; see GET /api/cleanups)"
	}
	if j.Reason != "" {
		outcome += ": " + j.Reason
	}
	fmt.Fprintf(w, "%s\t%s\n", j.InstanceID, outcome)
}

// Cleanup asks for the cleanup of each instance and prints each result. It
// returns an error if any was not removed (or, in a dry run, would not be).
func (c *Client) Cleanup(ctx context.Context, w io.Writer, ids []string, dryRun bool) error {
	refused := 0
	for _, id := range ids {
		path := "/api/containers/stale/" + id + "/cleanup"
		if dryRun {
			path += "?dry_run=true"
		}
		var job api.JobView
		status, err := c.call(ctx, http.MethodPost, path, nil, &job, http.StatusConflict)
		if err != nil {
			refused++
			fmt.Fprintf(w, "%s\terror: %v\n", id, err)
			continue
		}
		if status == http.StatusConflict {
			refused++
		}
		printJob(w, job)
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d cleanups did not remove", refused, len(ids))
	}
	return nil
}

// CleanupAll asks for the cleanup of every stale instance and prints each
// result.
func (c *Client) CleanupAll(ctx context.Context, w io.Writer, dryRun bool) error {
	var res api.BulkResponse
	if _, err := c.call(ctx, http.MethodPost, "/api/containers/stale/cleanup", map[string]bool{"dry_run": dryRun}, &res); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d stale, %d asked\n", res.Stale, len(res.Results))
	for _, j := range res.Results {
		printJob(w, j)
	}
	return nil
}

// ParseUntil reads a keep's end as the keep command takes it: forever, a
// duration from now (72h, 7d), a date (2026-12-24, midnight UTC) or an RFC
// 3339 time; it returns what the API takes (forever or an RFC 3339 time).
func ParseUntil(raw string, now time.Time) (string, error) {
	v := strings.TrimSpace(raw)
	if v == api.Forever {
		return v, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	if d, err := stale.ParseStaleAfter(v); err == nil && d > 0 {
		return now.Add(d).UTC().Format(time.RFC3339), nil
	}
	return "", fmt.Errorf("--until %q: give forever, a duration (72h, 7d), a date (2026-12-24) or an RFC 3339 time", raw)
}

// Keep keeps an instance from being stale until a time or forever.
func (c *Client) Keep(ctx context.Context, w io.Writer, id, until, reason string) error {
	var keep api.KeepView
	if _, err := c.call(ctx, http.MethodPost, "/api/containers/stale/"+url.PathEscape(id)+"/keep",
		api.KeepRequest{Until: until, Reason: reason}, &keep); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s\tkept until %s by %s: %s\n", keep.InstanceID, keep.KeptUntil, keep.KeptBy, keep.KeepReason)
	return err
}

// Unkeep lifts an instance's keep.
func (c *Client) Unkeep(ctx context.Context, w io.Writer, id string) error {
	if _, err := c.call(ctx, http.MethodDelete, "/api/containers/stale/"+url.PathEscape(id)+"/keep", nil, nil); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s\tkeep lifted\n", id)
	return err
}

// Engines prints the Docker engines registered with the store and their
// exporters' latest heartbeat.
func (c *Client) Engines(ctx context.Context, w io.Writer) error {
	var rows []api.EngineView
	if _, err := c.call(ctx, http.MethodGet, "/api/engines", nil, &rows); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENGINE\tFIRST SEEN\tLAST SEEN")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.FirstSeen, r.LastSeen)
	}
	return tw.Flush()
}

// ForgetEngine removes an engine's registration (role admin; audited).
func (c *Client) ForgetEngine(ctx context.Context, w io.Writer, name string) error {
	if _, err := c.call(ctx, http.MethodDelete, "/api/engines/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "forgot engine %s\n", name)
	return err
}

// Commands are the operator commands added to the binary's command line.
type Commands struct {
	List, Cleanup, Keep, Unkeep, Engines, Forget *kingpin.CmdClause
	url, tokenFile, engine, id, until, reason    string
	ids                                          []string
	all, dryRun                                  bool
}

// AddCommands adds list, cleanup, keep, unkeep and engines to app.
func AddCommands(app *kingpin.Application) *Commands {
	c := &Commands{}
	c.List = app.Command("list", "Print the stale instances of a running exporter.")
	c.Cleanup = app.Command("cleanup", "Ask a running exporter to clean up instances and print each result.")
	c.Cleanup.Arg("id", "Instance ids.").StringsVar(&c.ids)
	c.Cleanup.Flag("all", "Every stale instance (role admin).").BoolVar(&c.all)
	c.Cleanup.Flag("dry-run", "Report what would be removed; remove nothing.").BoolVar(&c.dryRun)
	c.Keep = app.Command("keep", "Keep an instance from being stale, until a time or forever (role operator; written to the event log).")
	c.Keep.Arg("id", "Instance id.").Required().StringVar(&c.id)
	c.Keep.Flag("until", "Until when: a duration from now (72h, 7d), a date (2026-12-24), an RFC 3339 time, or forever.").Required().StringVar(&c.until)
	c.Keep.Flag("reason", "Why, for the event log and the list.").Required().StringVar(&c.reason)
	c.Unkeep = app.Command("unkeep", "Lift an instance's keep (role operator): it is stale again at once if past its threshold.")
	c.Unkeep.Arg("id", "Instance id.").Required().StringVar(&c.id)
	engines := app.Command("engines", "The Docker engines registered with the store.")
	c.Engines = engines.Command("list", "Print the registered engines and their latest heartbeat.").Default()
	c.Forget = engines.Command("forget", "Remove the registration of a retired engine (role admin; audited), so that "+
		"--docker.claim-unowned=auto judges unowned instances again once it was the only other one.")
	c.Forget.Arg("name", "The engine's name (its docker_host).").Required().StringVar(&c.engine)
	for _, cmd := range []*kingpin.CmdClause{c.List, c.Cleanup, c.Keep, c.Unkeep, c.Engines, c.Forget} {
		cmd.Flag("url", "The exporter's address.").Default("http://127.0.0.1:9817").StringVar(&c.url)
		cmd.Flag("token-file", "File holding the API token (else $"+TokenEnv+").").StringVar(&c.tokenFile)
	}
	return c
}

// Run runs the parsed command, writing its output to w.
func (c *Commands) Run(ctx context.Context, command string, w io.Writer) error {
	client, err := NewClient(c.url, c.tokenFile)
	if err != nil {
		return err
	}
	switch {
	case command == c.List.FullCommand():
		return client.List(ctx, w)
	case command == c.Keep.FullCommand():
		until, err := ParseUntil(c.until, time.Now())
		if err != nil {
			return err
		}
		return client.Keep(ctx, w, c.id, until, c.reason)
	case command == c.Unkeep.FullCommand():
		return client.Unkeep(ctx, w, c.id)
	case command == c.Engines.FullCommand():
		return client.Engines(ctx, w)
	case command == c.Forget.FullCommand():
		return client.ForgetEngine(ctx, w, c.engine)
	case c.all && len(c.ids) > 0:
		return errors.New("give instance ids or --all, not both")
	case c.all:
		return client.CleanupAll(ctx, w, c.dryRun)
	case len(c.ids) == 0:
		return errors.New("give instance ids, or --all")
	}
	return client.Cleanup(ctx, w, c.ids, c.dryRun)
}
