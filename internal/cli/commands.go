package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/docker-watcher/stale-exporter/internal/api"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// The output formats, as amtool names them.
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// Commands are the operator commands added to the binary's command line.
type Commands struct {
	List, Cleanup, Cleanups, Keep, Unkeep, Engines, Forget *kingpin.CmdClause

	opts                      Options
	output                    string
	filter                    Filter
	engine, id, until, reason string
	ids                       []string
	all, dryRun, yes          bool
	max, limit                int
	job                       string
}

// AddCommands adds list, cleanup, cleanups, keep, unkeep and engines to
// app.
func AddCommands(app *kingpin.Application) *Commands {
	c := &Commands{}
	c.List = app.Command("list", "Print the stale instances of a running exporter (every page of the list).")
	c.List.Flag("project", "Only the instances of this project.").StringVar(&c.filter.Project)
	c.List.Flag("stage", "Only the instances of this stage.").StringVar(&c.filter.Stage)
	c.Cleanup = app.Command("cleanup", "Ask a running exporter to clean up instances and print each result; exit 1 unless every one asked was removed.")
	c.Cleanup.Arg("id", "Instance ids.").StringsVar(&c.ids)
	c.Cleanup.Flag("all", "Every stale instance (role admin); asks for confirmation unless --yes.").BoolVar(&c.all)
	c.Cleanup.Flag("max", "With --all: clean at most this many (0: the exporter's --cleanup.max-per-request).").Default("0").IntVar(&c.max)
	c.Cleanup.Flag("yes", "With --all: do not ask for confirmation.").Short('y').BoolVar(&c.yes)
	c.Cleanup.Flag("dry-run", "Report what would be removed; remove nothing.").BoolVar(&c.dryRun)
	c.Cleanups = app.Command("cleanups", "Print the latest cleanup jobs, or one job by its id.")
	c.Cleanups.Arg("job", "A job id (as a 202 or a list gave it).").StringVar(&c.job)
	c.Cleanups.Flag("limit", "How many of the latest jobs (1 to 1000).").Default("20").IntVar(&c.limit)
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
	for _, cmd := range c.commands() {
		cmd.Flag("url", "The exporter's address.").Default("http://127.0.0.1:9817").StringVar(&c.opts.URL)
		cmd.Flag("token-file", "File holding the API token (else $"+TokenEnv+").").StringVar(&c.opts.TokenFile)
		cmd.Flag("output", "Output format: table or json.").Short('o').Default(OutputTable).EnumVar(&c.output, OutputTable, OutputJSON)
		// A minute: a cleanup waits up to the exporter's --cleanup.wait for
		// its jobs, within its --web.write-timeout.
		cmd.Flag("timeout", "Longest time to wait for each answer of the exporter.").Default("1m").DurationVar(&c.opts.Timeout)
		cmd.Flag("tls.ca-file", "PEM file of the CA the exporter's certificate is signed by (default: the system's).").StringVar(&c.opts.CAFile)
		cmd.Flag("tls.insecure-skip-verify", "Trust any certificate of the exporter.").BoolVar(&c.opts.InsecureSkipVerify)
	}
	return c
}

func (c *Commands) commands() []*kingpin.CmdClause {
	return []*kingpin.CmdClause{c.List, c.Cleanup, c.Cleanups, c.Keep, c.Unkeep, c.Engines, c.Forget}
}

// Handles reports whether command is one of these commands.
func (c *Commands) Handles(command string) bool {
	for _, cmd := range c.commands() {
		if cmd.FullCommand() == command {
			return true
		}
	}
	return false
}

// Terminal is where a command talks to the operator: its output, and its
// questions, asked on Err and answered on In only when Interactive.
type Terminal struct {
	In          io.Reader
	Out, Err    io.Writer
	Interactive bool
}

// Run runs the parsed command. Its error says what went wrong, or what was
// asked and not done; the caller exits non-zero on it.
func (c *Commands) Run(ctx context.Context, command string, term Terminal) error {
	client, err := NewClient(c.opts)
	if err != nil {
		return err
	}
	p := printer{w: term.Out, json: c.output == OutputJSON}
	switch command {
	case c.List.FullCommand():
		rows, total, err := client.Stale(ctx, c.filter)
		if err != nil {
			return err
		}
		return p.stale(rows, total)
	case c.Cleanups.FullCommand():
		return c.cleanups(ctx, client, p)
	case c.Keep.FullCommand():
		until, err := ParseUntil(c.until, time.Now())
		if err != nil {
			return err
		}
		keep, err := client.Keep(ctx, c.id, until, c.reason)
		if err != nil {
			return err
		}
		return p.keep(keep)
	case c.Unkeep.FullCommand():
		if err := client.Unkeep(ctx, c.id); err != nil {
			return err
		}
		return p.done(map[string]any{"instance_id": c.id, "kept": false}, c.id+"\tkeep lifted")
	case c.Engines.FullCommand():
		rows, err := client.Engines(ctx)
		if err != nil {
			return err
		}
		return p.engines(rows)
	case c.Forget.FullCommand():
		if err := client.ForgetEngine(ctx, c.engine); err != nil {
			return err
		}
		return p.done(map[string]any{"name": c.engine, "forgotten": true}, "forgot engine "+c.engine)
	}
	return c.cleanup(ctx, client, p, term)
}

func (c *Commands) cleanups(ctx context.Context, client *Client, p printer) error {
	if c.job == "" {
		if c.limit < 1 || c.limit > 1000 {
			return fmt.Errorf("--limit %d: give 1 to 1000", c.limit)
		}
		jobs, err := client.Jobs(ctx, c.limit)
		if err != nil {
			return err
		}
		return p.jobs(jobs)
	}
	id, err := strconv.ParseInt(c.job, 10, 64)
	if err != nil || id < 1 {
		return fmt.Errorf("job id %q is not a positive number", c.job)
	}
	job, err := client.Job(ctx, id)
	if err != nil {
		return err
	}
	return p.job(job)
}

func (c *Commands) cleanup(ctx context.Context, client *Client, p printer, term Terminal) error {
	switch {
	case c.all && len(c.ids) > 0:
		return errors.New("give instance ids or --all, not both")
	case !c.all && len(c.ids) == 0:
		return errors.New("give instance ids, or --all")
	case !c.all && (c.max != 0 || c.yes):
		return errors.New("--max and --yes go with --all")
	case c.max < 0:
		return fmt.Errorf("--max %d: give 0 (the exporter's cap) or more", c.max)
	case !c.all:
		outcomes := client.Cleanup(ctx, c.ids, c.dryRun)
		if err := p.outcomes(outcomes); err != nil {
			return err
		}
		return notRemoved(outcomes, len(c.ids))
	}
	if !c.dryRun && !c.yes {
		if err := c.confirm(ctx, client, term); err != nil {
			return err
		}
	}
	res, err := client.CleanupAll(ctx, c.dryRun, c.max)
	if err != nil {
		return err
	}
	outcomes := make([]Outcome, len(res.Results))
	for i := range res.Results {
		outcomes[i] = Outcome{InstanceID: res.Results[i].InstanceID, Job: &res.Results[i]}
	}
	if err := p.bulk(res, outcomes); err != nil {
		return err
	}
	return notRemoved(outcomes, len(outcomes))
}

// confirm shows what --all would remove (a dry run of it) and asks the
// operator; without a terminal to ask on, it refuses: a script says --yes.
func (c *Commands) confirm(ctx context.Context, client *Client, term Terminal) error {
	if !term.Interactive {
		return errors.New("cleanup --all removes containers: confirm with --yes (there is no terminal to ask on)")
	}
	preview, err := client.CleanupAll(ctx, true, c.max)
	if err != nil {
		return fmt.Errorf("preview: %w", err)
	}
	var would []string
	for _, j := range preview.Results {
		if j.Result == store.ResultWouldRemove {
			would = append(would, j.InstanceID)
		}
	}
	if len(would) == 0 {
		return fmt.Errorf("nothing to remove: %d stale, none would be removed now (see cleanup --all --dry-run)", preview.Stale)
	}
	fmt.Fprintf(term.Err, "%d stale at %s; a dry run would remove %d: %s\n", preview.Stale, client.URL, len(would), strings.Join(would, " "))
	fmt.Fprint(term.Err, "Remove them now? Each is checked again before it goes. [y/N] ")
	answer, err := bufio.NewReader(term.In).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the answer: %w", err)
	}
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return errors.New("not confirmed: nothing was removed")
	}
	return nil
}

// notRemoved is the error of cleanups of which some were not removed.
func notRemoved(outcomes []Outcome, asked int) error {
	n := 0
	for _, o := range outcomes {
		if !o.Removed() {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%d of %d asked were not removed", n, asked)
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
