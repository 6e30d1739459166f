package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/docker-watcher/stale-exporter/internal/api"
)

// printer writes answers as a table for people, or as JSON for scripts:
// the API's own objects, so that a script reads what the API says.
type printer struct {
	w    io.Writer
	json bool
}

func (p printer) encode(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes a header and rows, aligned.
func (p printer) table(header string, rows func(w io.Writer)) error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func (p printer) stale(rows []api.StaleContainer, total int) error {
	if p.json {
		return p.encode(map[string]any{"total": total, "instances": rows})
	}
	return p.table("INSTANCE\tPROJECT\tSTAGE\tTAG\tCONTAINER\tSTATE\tDAYS SINCE LAST ALIVE\tNOTE", func(w io.Writer) {
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.12s\t%s\t%.2f\t%s\n", r.InstanceID, r.ProjectName, r.StageName, r.ImageTag,
				r.ContainerID, r.DockerState, r.DaysSinceLastAlive, note(r))
		}
	})
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

// outcome says in a few words how a cleanup ended.
func outcome(o Outcome) string {
	if o.Job == nil {
		return "error: " + o.Error
	}
	s := string(o.Job.Result)
	if s == "" {
		s = fmt.Sprintf("%s (still in progress: stale-exporter cleanups %d)", o.Job.State, o.Job.JobID)
	}
	if o.Job.Reason != "" {
		s += ": " + o.Job.Reason
	}
	return s
}

func (p printer) outcomes(outcomes []Outcome) error {
	if p.json {
		return p.encode(outcomes)
	}
	for _, o := range outcomes {
		if _, err := fmt.Fprintf(p.w, "%s\t%s\n", o.InstanceID, outcome(o)); err != nil {
			return err
		}
	}
	return nil
}

func (p printer) bulk(res api.BulkResponse, outcomes []Outcome) error {
	if p.json {
		return p.encode(res)
	}
	fmt.Fprintf(p.w, "%d stale, %d asked\n", res.Stale, len(res.Results))
	return p.outcomes(outcomes)
}

func (p printer) job(j api.JobView) error {
	if p.json {
		return p.encode(j)
	}
	return p.jobs([]api.JobView{j})
}

func (p printer) jobs(jobs []api.JobView) error {
	if p.json {
		return p.encode(jobs)
	}
	return p.table("JOB\tINSTANCE\tTRIGGER\tBY\tDRY RUN\tCREATED\tOUTCOME", func(w io.Writer) {
		for i := range jobs {
			j := jobs[i]
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%v\t%s\t%s\n", j.JobID, j.InstanceID, j.Trigger, j.RequestedBy, j.DryRun, j.CreatedAt,
				outcome(Outcome{InstanceID: j.InstanceID, Job: &j}))
		}
	})
}

func (p printer) keep(k api.KeepView) error {
	if p.json {
		return p.encode(k)
	}
	_, err := fmt.Fprintf(p.w, "%s\tkept until %s by %s: %s\n", k.InstanceID, k.KeptUntil, k.KeptBy, k.KeepReason)
	return err
}

func (p printer) engines(rows []api.EngineView) error {
	if p.json {
		return p.encode(rows)
	}
	return p.table("ENGINE\tFIRST SEEN\tLAST SEEN", func(w io.Writer) {
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.FirstSeen, r.LastSeen)
		}
	})
}

// done prints the answer of a command that changed one thing.
func (p printer) done(v any, line string) error {
	if p.json {
		return p.encode(v)
	}
	_, err := fmt.Fprintln(p.w, line)
	return err
}
