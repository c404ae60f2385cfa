package cli

import (
	"context"
	"encoding/json"
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
		"List, inspect, follow, cancel, delete and rerun jobs",
		strings.TrimSpace(`
List and inspect the jobs in the data directory, follow one to its end,
cancel, delete or rerun them. While the daemon runs, it answers and does
the work; otherwise the commands work on the files ("jobs watch" then only
shows what a job did).
`+exitStatus("the command failed, or a job id names no job")),
		example(`
  secauto jobs list --status running,pending
  secauto jobs show 0198a2
  secauto jobs watch 0198a2
  secauto jobs cancel 0198a2
  secauto jobs rerun 0198a2
  secauto jobs delete --status failed --older-than 30d --dry-run`))
	cmd.AddCommand(NewCmdJobsList(f, nil), NewCmdJobsShow(f, nil), NewCmdJobsWatch(f, nil),
		NewCmdJobsCancel(f, nil), NewCmdJobsDelete(f, nil), NewCmdJobsRerun(f, nil))
	return cmd
}

// JobsListOptions holds "jobs list"'s flags and dependencies.
type JobsListOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	// Context is what --watch runs under: cancelled on SIGINT or SIGTERM.
	Context func() (context.Context, context.CancelFunc)

	Statuses []string
	Since    string
	Limit    int
	Watch    bool
	Interval time.Duration
	Output   outputFormat
}

// NewCmdJobsList is "secauto jobs list"; runF replaces the run function in
// tests of flag parsing.
func NewCmdJobsList(f *Factory, runF func(*JobsListOptions) error) *cobra.Command {
	opts := &JobsListOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "jobs"), Context: interruptContext}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Long: strings.TrimSpace(`
List jobs, newest first.

On a terminal, times are relative and long errors are cut to fit; piped,
times are RFC 3339 and nothing is cut. Finding no job is not an error.

--watch lists again every --interval until interrupted: on a terminal the
screen is redrawn; piped, each listing follows the last after a line with
its time (with -o json, one array per listing). A --since duration counts
back from each listing's time.
` + exitStatus("")),
		Example: example(`
  # what failed in the last day
  secauto jobs list --status failed --since 24h

  # live jobs, for a script
  secauto jobs list --status pending,running -o json

  # the ten newest jobs since a date
  secauto jobs list --since 2025-07-01 --limit 10

  # a live view of what runs and waits
  secauto jobs list --status pending,running --watch --interval 1s`),
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
	cmd.Flags().BoolVarP(&opts.Watch, "watch", "w", false, "list again every --interval until interrupted")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 2*time.Second, "time between listings with --watch")
	addOutputFlag(cmd, &opts.Output)
	_ = cmd.RegisterFlagCompletionFunc("status", completeStatuses)
	return cmd
}

func jobsListRun(opts *JobsListOptions) error {
	statuses, err := parseStatuses(opts.Statuses)
	if err != nil {
		return err
	}
	if _, err := parseSince(opts.Since, opts.Now()); err != nil {
		return err
	}
	if err := checkLimit(opts.Limit); err != nil {
		return err
	}
	if opts.Watch && opts.Interval < 100*time.Millisecond {
		return usageErrorf("invalid --interval %s: give at least 100ms", opts.Interval)
	}

	admin, err := opts.Admin(readOnly)
	if err != nil {
		return err
	}
	defer admin.Close()
	list := func(ctx context.Context) error {
		now := opts.Now()
		since, _ := parseSince(opts.Since, now)
		jobs, err := admin.ListJobs(ctx, store.Filter{Statuses: statuses, Since: since, Limit: opts.Limit})
		if err != nil {
			return err
		}
		return printJobList(opts, jobs, now)
	}
	if !opts.Watch {
		return list(context.Background())
	}

	ctx, stop := opts.Context()
	defer stop()
	tty := opts.IO.IsStdoutTTY() && opts.Output == formatTable
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	for first := true; ; first = false {
		switch {
		case tty:
			// Home and clear, then the listing: a redraw, as watch(1).
			fmt.Fprintf(opts.IO.Out, "\x1b[H\x1b[2J%s\n\n", opts.IO.ColorScheme().Gray(fmt.Sprintf("Every %s: secauto jobs list    %s", opts.Interval, opts.Now().Format(time.TimeOnly))))
		case opts.Output == formatTable:
			if !first {
				fmt.Fprintln(opts.IO.Out)
			}
			fmt.Fprintf(opts.IO.Out, "# %s\n", opts.Now().UTC().Format(time.RFC3339))
		case opts.Output == formatYAML && !first:
			fmt.Fprintln(opts.IO.Out, "---")
		}
		if err := list(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil // interrupted: the end of a watch, not a failure
		case <-tick.C:
		}
	}
}

// printJobList prints one listing of "jobs list".
func printJobList(opts *JobsListOptions, jobs []*job.Job, now time.Time) error {
	if opts.Output != formatTable {
		if jobs == nil {
			jobs = []*job.Job{} // an empty array, never null
		}
		if opts.Watch && opts.Output == formatJSON {
			// One array a line, so that each listing parses on its own.
			b, err := json.Marshal(jobs)
			if err != nil {
				return fmt.Errorf("cannot encode output: %w", err)
			}
			_, err = fmt.Fprintf(opts.IO.Out, "%s\n", b)
			return err
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
		Args:              exactArgs(1, "job ID"),
		ValidArgsFunction: jobIDArgs(f, 1),
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
// jobIDArgs completes job ids for a command's arguments: the first max of
// them, or every one when max is 0.
func jobIDArgs(f *Factory, max int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if max > 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeJobIDs(f, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

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
	if j.RerunOf != "" {
		field("Rerun of", j.RerunOf)
	}
	if len(j.Reruns) > 0 {
		field("Reruns", strings.Join(j.Reruns, ", "))
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
