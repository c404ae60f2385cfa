package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// NewCmdJobs is "secauto jobs".
func NewCmdJobs(f *Factory) *cobra.Command {
	cmd := groupCommand("jobs",
		"List and inspect jobs",
		strings.TrimSpace(`
List and inspect the jobs in the data directory. These commands only read;
while the daemon runs, it answers them.
`+exitStatus("the command failed, or jobs show found no such job")),
		example(`
  secauto jobs list --status running,pending
  secauto jobs show 0198a2`))
	cmd.AddCommand(NewCmdJobsList(f, nil), NewCmdJobsShow(f, nil))
	return cmd
}

// JobsListOptions holds "jobs list"'s flags and dependencies.
type JobsListOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	Statuses []string
	Since    string
	Limit    int
	Output   outputFormat
}

// NewCmdJobsList is "secauto jobs list"; runF replaces the run function in
// tests of flag parsing.
func NewCmdJobsList(f *Factory, runF func(*JobsListOptions) error) *cobra.Command {
	opts := &JobsListOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "jobs")}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Long: strings.TrimSpace(`
List jobs, newest first.

On a terminal, times are relative and long errors are cut to fit; piped,
times are RFC 3339 and nothing is cut. Finding no job is not an error.
` + exitStatus("")),
		Example: example(`
  # what failed in the last day
  secauto jobs list --status failed --since 24h

  # live jobs, for a script
  secauto jobs list --status pending,running -o json

  # the ten newest jobs since a date
  secauto jobs list --since 2025-07-01 --limit 10`),
		Aliases: []string{"ls"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return jobsListRun(opts)
		},
	}
	cmd.Flags().StringSliceVarP(&opts.Statuses, "status", "s", nil, "only jobs with these statuses: pending, running, completed, failed, cancelled")
	cmd.Flags().StringVar(&opts.Since, "since", "", "only jobs created within DURATION (24h, 7d) or since TIME (2025-07-09, RFC 3339)")
	cmd.Flags().IntVarP(&opts.Limit, "limit", "n", 0, "at most N jobs (0 for all)")
	addOutputFlag(cmd, &opts.Output)
	_ = cmd.RegisterFlagCompletionFunc("status", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		names := make([]string, len(job.Statuses))
		for i, s := range job.Statuses {
			names[i] = string(s)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func jobsListRun(opts *JobsListOptions) error {
	statuses, err := parseStatuses(opts.Statuses)
	if err != nil {
		return err
	}
	now := opts.Now()
	since, err := parseSince(opts.Since, now)
	if err != nil {
		return err
	}
	if err := checkLimit(opts.Limit); err != nil {
		return err
	}

	admin, err := opts.Admin(readOnly)
	if err != nil {
		return err
	}
	defer admin.Close()
	jobs, err := admin.ListJobs(context.Background(), store.Filter{Statuses: statuses, Since: since, Limit: opts.Limit})
	if err != nil {
		return err
	}

	if opts.Output != formatTable {
		if jobs == nil {
			jobs = []*job.Job{} // an empty array, never null
		}
		return printData(opts.IO.Out, opts.Output, jobs)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "no jobs found")
		return nil
	}
	tty := opts.IO.IsStdoutTTY()
	cs := opts.IO.ColorScheme()
	t := newTable(opts.IO, "id", "status", "steps", "created", "duration", "error")
	errWidth := 0
	if tty {
		// Keep rows on one line: what is left after the fixed columns.
		errWidth = max(opts.IO.TerminalWidth()-38-11-7-16-10, 20)
		if opts.IO.TerminalWidth() == 0 {
			errWidth = 60
		}
	}
	for _, j := range jobs {
		t.addRow(
			j.ID,
			cs.Status(string(j.Status)),
			fmt.Sprintf("%d/%d", len(j.Results), len(j.Playbook)),
			formatTime(tty, &j.CreatedAt, now),
			jobDuration(j, now),
			truncate(j.Error, errWidth),
		)
	}
	return t.render()
}

// jobDuration is how long a job ran, or has been running.
func jobDuration(j *job.Job, now time.Time) string {
	if j.StartedAt == nil {
		return "-"
	}
	end := now
	if j.CompletedAt != nil {
		end = *j.CompletedAt
	}
	return humanDuration(end.Sub(*j.StartedAt))
}

// JobsShowOptions holds "jobs show"'s flags and dependencies.
type JobsShowOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	ID     string
	Output outputFormat
}

// NewCmdJobsShow is "secauto jobs show".
func NewCmdJobsShow(f *Factory, runF func(*JobsShowOptions) error) *cobra.Command {
	opts := &JobsShowOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "jobs")}
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one job with every field and step",
		Long: strings.TrimSpace(`
Show one job: its fields, its context, then each step with its status,
duration, output and error. A unique prefix of the id is enough.
` + exitStatus("no job has that id or prefix, or the prefix matches several jobs")),
		Example: example(`
  secauto jobs show 0198a2c4-7d1e-7b2a-9c4f-1a2b3c4d5e6f
  secauto jobs show 0198a2
  secauto jobs show 0198a2 -o json | jq .context`),
		Args: exactArgs(1, "job ID"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeJobIDs(f, toComplete), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return jobsShowRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

// completeJobIDs offers the ids of stored jobs, newest first, with their
// status as the description.
func completeJobIDs(f *Factory, prefix string) []string {
	admin, err := f.OpenAdmin("jobs", readOnly)
	if err != nil {
		return nil
	}
	defer admin.Close()
	jobs, err := admin.ListJobs(context.Background(), store.Filter{})
	if err != nil {
		return nil
	}
	var out []string
	for _, j := range jobs {
		if strings.HasPrefix(j.ID, prefix) {
			out = append(out, fmt.Sprintf("%s\t%s, created %s", j.ID, j.Status, j.CreatedAt.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

func jobsShowRun(opts *JobsShowOptions) error {
	admin, err := opts.Admin(readOnly)
	if err != nil {
		return err
	}
	defer admin.Close()
	j, err := admin.GetJob(context.Background(), opts.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("no job has id or id prefix %q; list jobs with 'secauto jobs list'", opts.ID)
	case errors.Is(err, store.ErrAmbiguous):
		return fmt.Errorf("id prefix %q matches more than one job; give more of the id", opts.ID)
	case err != nil:
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, j)
	}
	return printJob(opts.IO, j, opts.Now())
}

// printJob lays a job out for reading: fields, context, then the steps.
func printJob(ios *IOStreams, j *job.Job, now time.Time) error {
	w := &errWriter{w: ios.Out}
	cs := ios.ColorScheme()
	tty := ios.IsStdoutTTY()
	when := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "-"
		}
		s := t.UTC().Format(time.RFC3339)
		if tty {
			s += " (" + relativeTime(*t, now) + ")"
		}
		return s
	}
	field := func(name, value string) {
		w.printf("%s %s\n", cs.Bold(fmt.Sprintf("%-10s", name+":")), value)
	}

	field("ID", j.ID)
	field("Status", cs.Status(string(j.Status)))
	field("Created", when(&j.CreatedAt))
	field("Started", when(j.StartedAt))
	field("Completed", when(j.CompletedAt))
	field("Duration", jobDuration(j, now))
	if j.Attempts > 0 || j.OnInterrupt != "" {
		a := fmt.Sprintf("%d", j.Attempts)
		if j.OnInterrupt == job.OnInterruptRetry {
			maxA := j.MaxAttempts
			if maxA <= 0 {
				maxA = job.DefaultMaxAttempts
			}
			a += fmt.Sprintf(" of %d (retried when interrupted)", maxA)
		}
		field("Attempts", a)
	}
	if j.Error != "" {
		field("Error", cs.Red(j.Error))
	}

	w.printf("\n%s\n", cs.Bold("Context:"))
	if len(j.Context) == 0 {
		w.printf("  (empty)\n")
	} else {
		w.printf("%s", indent(yamlText(j.Context), "  "))
	}

	w.printf("\n%s\n", cs.Bold(fmt.Sprintf("Steps (%d):", len(j.Playbook))))
	results := map[string]job.Result{}
	for _, r := range j.Results {
		results[r.Step] = r
	}
	shown := map[string]bool{}
	n := 0
	step := func(name, action string, r *job.Result) {
		n++
		status, dur := cs.Gray("not run"), ""
		if r != nil {
			status = cs.Status(r.Status)
			if r.CompletedAt != nil {
				dur = "  " + humanDuration(r.CompletedAt.Sub(r.StartedAt))
			}
		}
		w.printf("  %d. %s %s  %s%s\n", n, cs.Bold(name), cs.Gray("("+action+")"), status, dur)
		if r == nil {
			return
		}
		if r.Output != nil && r.Output != "" {
			out := strings.TrimRight(outputText(r.Output), "\n")
			if strings.Contains(out, "\n") {
				w.printf("     output:\n%s", indent(out+"\n", "       "))
			} else {
				w.printf("     output: %s\n", out)
			}
		}
		if r.Error != "" {
			w.printf("     error:  %s\n", cs.Red(r.Error))
		}
	}
	for _, s := range j.Playbook {
		shown[s.Name] = true
		if r, ok := results[s.Name]; ok {
			step(s.Name, s.Action, &r)
		} else {
			step(s.Name, s.Action, nil)
		}
	}
	for _, r := range j.Results {
		if !shown[r.Step] {
			step(r.Step, r.Action, &r)
		}
	}
	if n == 0 {
		w.printf("  (none)\n")
	}
	return w.err
}

// outputText renders a step's output: strings as they are, anything else
// as YAML.
func outputText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return yamlText(v)
}

func yamlText(v any) string {
	var b strings.Builder
	if err := printData(&b, formatYAML, v); err != nil {
		return fmt.Sprint(v)
	}
	return b.String()
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" && l != "\n" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// errWriter keeps the first write error so long printers need not check
// every line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
