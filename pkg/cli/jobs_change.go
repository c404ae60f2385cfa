package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// JobsCancelOptions holds "jobs cancel"'s flags and dependencies.
type JobsCancelOptions struct {
	IO    *IOStreams
	Admin func(lockMode) (Admin, error)

	IDs    []string
	Output outputFormat
}

// NewCmdJobsCancel is "secauto jobs cancel".
func NewCmdJobsCancel(f *Factory, runF func(*JobsCancelOptions) error) *cobra.Command {
	opts := &JobsCancelOptions{IO: f.IOStreams, Admin: adminFor(f, "jobs cancel")}
	cmd := &cobra.Command{
		Use:   "cancel ID...",
		Short: "Cancel pending or running jobs",
		Long: strings.TrimSpace(`
Cancel each job named (an id or a unique prefix): a pending job never runs,
a running one stops at once, its running step failing with "cancelled by
request". A job that already ended is not changed and is reported with its
status; the other jobs named are cancelled all the same.

While the daemon runs, it cancels them. With no daemon, a job the store
shows as running is one a crash left behind, and it is cancelled as it
stands. Printed: the cancelled jobs (an array of jobs with -o json).
` + exitStatus("an id names no job or a job that already ended (the others are still cancelled)")),
		Example: example(`
  secauto jobs cancel 0198a2c4
  secauto jobs cancel 0198a2c4 0198a2d1 -o json`),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("missing job ID")
			}
			return nil
		},
		ValidArgsFunction: jobIDArgs(f, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IDs = args
			if runF != nil {
				return runF(opts)
			}
			return jobsCancelRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func jobsCancelRun(opts *JobsCancelOptions) error {
	var outcomes []jobOutcome
	err := withJobAdmin(opts.Admin, exclusive, func(a jobAdmin) (err error) {
		outcomes, err = a.CancelJobs(context.Background(), opts.IDs)
		return err
	})
	if err != nil {
		return err
	}
	return reportOutcomes(opts.IO, opts.Output, outcomes, "Cancelled")
}

// reportOutcomes prints the jobs changed (an array with -o json or yaml,
// a line each otherwise, "VERB job ID (status)") and one error line per
// job that was not; any such error is exit status 1.
func reportOutcomes(ios *IOStreams, format outputFormat, outcomes []jobOutcome, verb string) error {
	jobs := []*job.Job{}
	failed := false
	for _, o := range outcomes {
		if o.Err != nil {
			failed = true
			printError(ios.ErrOut, outcomeError(o))
			continue
		}
		jobs = append(jobs, o.Job)
	}
	if format != formatTable {
		if err := printData(ios.Out, format, jobs); err != nil {
			return err
		}
	} else {
		cs := ios.ColorScheme()
		for _, j := range jobs {
			if _, err := fmt.Fprintf(ios.Out, "%s job %s (%s)\n", verb, j.ID, cs.Status(string(j.Status))); err != nil {
				return err
			}
		}
	}
	if failed {
		return errSilent
	}
	return nil
}

func outcomeError(o jobOutcome) error {
	var ended *jobEndedError
	if errors.As(o.Err, &ended) {
		return o.Err
	}
	return jobRefError(o.Ref, o.Err)
}

// JobsDeleteOptions holds "jobs delete"'s flags and dependencies.
type JobsDeleteOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	IDs       []string
	Statuses  []string
	OlderThan string
	DryRun    bool
	Output    outputFormat
}

// NewCmdJobsDelete is "secauto jobs delete".
func NewCmdJobsDelete(f *Factory, runF func(*JobsDeleteOptions) error) *cobra.Command {
	opts := &JobsDeleteOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "jobs delete")}
	cmd := &cobra.Command{
		Use:   "delete ID... | --status S[,S] | --older-than DURATION",
		Short: "Delete jobs durably, cancelling live ones first",
		Long: strings.TrimSpace(`
Delete jobs for good: those named (ids or unique prefixes), or every job
the selection flags match. A pending or running job is cancelled first (its
job.cancelled webhook event is sent), then deleted.

A selection deletes the jobs that have all of the statuses (any of them)
and the age given: --status S[,S] and --older-than DURATION (created longer
ago than that: 12h, 30d). Without --status a selection takes only ended
jobs (completed, failed, cancelled): pending and running jobs are deleted
by a selection only when --status names them. Ids and a selection do not
mix. --dry-run prints what would be deleted and deletes nothing.

Printed: the deleted jobs as they were deleted (an array of jobs with -o
json). Unlike cleanup, which applies the retention, this deletes what it
is told to.
` + exitStatus("an id names no job, or a job could not be deleted (the others are still deleted)")),
		Example: example(`
  secauto jobs delete 0198a2c4

  # what a bulk delete would take, then do it
  secauto jobs delete --status failed,cancelled --older-than 7d --dry-run
  secauto jobs delete --status failed,cancelled --older-than 7d

  # live jobs too, when they are named
  secauto jobs delete --status pending --older-than 2h -o json`),
		ValidArgsFunction: jobIDArgs(f, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IDs = args
			if runF != nil {
				return runF(opts)
			}
			return jobsDeleteRun(opts)
		},
	}
	cmd.Flags().StringSliceVarP(&opts.Statuses, "status", "s", nil, "delete the jobs with these statuses (pending and running only when named)")
	cmd.Flags().StringVar(&opts.OlderThan, "older-than", "", "delete the jobs created longer ago than DURATION (12h, 30d)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print what would be deleted; delete nothing")
	addOutputFlag(cmd, &opts.Output)
	_ = cmd.RegisterFlagCompletionFunc("status", completeStatuses)
	return cmd
}

func completeStatuses(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	names := make([]string, len(job.Statuses))
	for i, s := range job.Statuses {
		names[i] = string(s)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func jobsDeleteRun(opts *JobsDeleteOptions) error {
	statuses, err := parseStatuses(opts.Statuses)
	if err != nil {
		return err
	}
	var olderThan time.Duration
	if opts.OlderThan != "" {
		if olderThan, err = parseOlderThan(opts.OlderThan); err != nil {
			return err
		}
	}
	selection := len(statuses) > 0 || opts.OlderThan != ""
	switch {
	case selection && len(opts.IDs) > 0:
		return usageErrorf("give job ids or a selection (--status, --older-than), not both")
	case !selection && len(opts.IDs) == 0:
		return usageErrorf("give the ids of the jobs to delete, or select them with --status or --older-than")
	}
	if selection && len(statuses) == 0 {
		statuses = []job.Status{job.Completed, job.Failed, job.Cancelled}
	}

	mode := exclusive
	if opts.DryRun {
		mode = readOnly
	}
	return withJobAdmin(opts.Admin, mode, func(a jobAdmin) error {
		ctx := context.Background()
		admin, _ := a.(Admin)
		refs := opts.IDs
		if selection {
			jobs, err := admin.ListJobs(ctx, store.Filter{Statuses: statuses})
			if err != nil {
				return err
			}
			cutoff := opts.Now().Add(-olderThan)
			refs = nil
			for _, j := range jobs {
				if olderThan == 0 || j.CreatedAt.Before(cutoff) {
					refs = append(refs, j.ID)
				}
			}
			if len(refs) == 0 {
				fmt.Fprintln(opts.IO.ErrOut, "no jobs match; nothing to delete")
				if opts.Output != formatTable {
					return printData(opts.IO.Out, opts.Output, []*job.Job{})
				}
				return nil
			}
		}
		if opts.DryRun {
			outcomes := make([]jobOutcome, 0, len(refs))
			for _, ref := range slices.Compact(refs) {
				o := jobOutcome{Ref: ref}
				if !validRef(ref) {
					o.Err = refNotFound(ref)
				} else {
					o.Job, o.Err = admin.GetJob(ctx, ref)
				}
				outcomes = append(outcomes, o)
			}
			return reportOutcomes(opts.IO, opts.Output, outcomes, "Would delete")
		}
		outcomes, err := a.DeleteJobs(ctx, refs)
		if err != nil {
			return err
		}
		return reportOutcomes(opts.IO, opts.Output, outcomes, "Deleted")
	})
}

// JobsRerunOptions holds "jobs rerun"'s flags and dependencies.
type JobsRerunOptions struct {
	IO      *IOStreams
	Now     func() time.Time
	Admin   func(lockMode) (Admin, error)
	Context func() (context.Context, context.CancelFunc)

	ID     string
	Wait   bool
	Output outputFormat
}

// NewCmdJobsRerun is "secauto jobs rerun".
func NewCmdJobsRerun(f *Factory, runF func(*JobsRerunOptions) error) *cobra.Command {
	opts := &JobsRerunOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "jobs rerun"), Context: interruptContext}
	cmd := &cobra.Command{
		Use:   "rerun ID",
		Short: "Run a job's playbook again as a new job",
		Long: strings.TrimSpace(`
Start a new job from a job's playbook and the context it was submitted
with (not the context its set steps left), with the same on_interrupt and
max_attempts. The two are linked both ways in one durable change: the new
job's rerun_of names the original, and the original's reruns lists the new
job. The original job is not changed otherwise, and may be in any state.

Printed: the new job's id and status, as the API's 202 answer, with
rerun_of. While the daemon runs it queues the new job at once; otherwise the
next "secauto serve" runs it. --wait follows the new job to its end as
"secauto run --wait" does, and needs a running daemon.
` + exitStatus("no job has that id or prefix, or with --wait the new job failed or was cancelled")),
		Example: example(`
  secauto jobs rerun 0198a2c4
  secauto jobs rerun 0198a2c4 --wait
  secauto jobs rerun 0198a2c4 -o json | jq -r .job_id`),
		Args:              exactArgs(1, "job ID"),
		ValidArgsFunction: jobIDArgs(f, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return jobsRerunRun(opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Wait, "wait", "w", false, "follow the new job to its end and print it; exit 1 unless it completed")
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func jobsRerunRun(opts *JobsRerunOptions) error {
	return withJobAdmin(opts.Admin, exclusive, func(a jobAdmin) error {
		if opts.Wait && !a.Daemon() {
			return &noDaemonError{"--wait needs a running daemon to run the job, and none holds data directory " +
				a.Dir() + "; start 'secauto serve', or rerun without --wait to queue the job for the next serve"}
		}
		ctx, stop := opts.Context()
		defer stop()
		res, err := a.RerunJob(ctx, opts.ID)
		var pe *server.RerunPlaybookError
		switch {
		case errors.As(err, &pe):
			return err
		case err != nil:
			return jobRefError(opts.ID, err)
		}
		if !a.Daemon() {
			fmt.Fprintf(opts.IO.ErrOut, "no daemon is running: job %s is stored as pending and runs when 'secauto serve' starts\n", res.JobID)
		}
		if !opts.Wait {
			return printSubmitted(opts.IO, opts.Output, res)
		}
		fmt.Fprintf(opts.IO.ErrOut, "job %s (rerun of %s) submitted; waiting for it to end (Ctrl+C stops waiting, not the job)\n", res.JobID, res.RerunOf)
		return followJob(ctx, a, opts.IO, res.JobID, opts.Output, opts.Now, false)
	})
}

// JobsWatchOptions holds "jobs watch"'s flags and dependencies.
type JobsWatchOptions struct {
	IO      *IOStreams
	Now     func() time.Time
	Admin   func(lockMode) (Admin, error)
	Context func() (context.Context, context.CancelFunc)

	ID     string
	Output outputFormat
}

// NewCmdJobsWatch is "secauto jobs watch".
func NewCmdJobsWatch(f *Factory, runF func(*JobsWatchOptions) error) *cobra.Command {
	opts := &JobsWatchOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "jobs"), Context: interruptContext}
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a job to its end, a line per step",
		Long: strings.TrimSpace(`
Follow a job (an id or a unique prefix) until it ends: first what it has
done so far, then a line for each step as it finishes and for each change
of status, and a last line with how it ended. A job that already ended is
shown at once.

With -o json or yaml the lines go to stderr and the job as it ended is
printed. Following needs the running daemon; with none, the job's history
is shown and a job that has not ended is an error (nothing can run it).
Ctrl+C stops watching, not the job.
` + exitStatus("the job failed or was cancelled, no job has that id or prefix, or the daemon went away")),
		Example: example(`
  secauto jobs watch 0198a2c4

  # in a script: wait for the end, then read the job
  secauto jobs watch 0198a2c4 -o json | jq .status`),
		Args:              exactArgs(1, "job ID"),
		ValidArgsFunction: jobIDArgs(f, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return jobsWatchRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func jobsWatchRun(opts *JobsWatchOptions) error {
	return withJobAdmin(opts.Admin, readOnly, func(a jobAdmin) error {
		ctx, stop := opts.Context()
		defer stop()
		return followJob(ctx, a, opts.IO, opts.ID, opts.Output, opts.Now, true)
	})
}
