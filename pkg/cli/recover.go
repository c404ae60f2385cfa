package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// RecoverOptions holds "recover"'s flags and dependencies.
type RecoverOptions struct {
	IO    *IOStreams
	Admin func(lockMode) (Admin, error)

	DryRun bool
	Output outputFormat
}

// NewCmdRecover is "secauto recover".
func NewCmdRecover(f *Factory, runF func(*RecoverOptions) error) *cobra.Command {
	opts := &RecoverOptions{IO: f.IOStreams, Admin: adminFor(f, "recover")}
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Repair the data directory after a crash and settle interrupted jobs",
		Long: strings.TrimSpace(`
Run crash recovery offline, as "secauto serve" does when it starts:

1. cut a torn or corrupt journal tail (the cut bytes are kept in
   jobs.journal.corrupt-YYYYMMDD-HHMMSS);
2. replace an unusable jobs.json (moved to jobs.json.corrupt-…) with the
   newest backup that verifies, then replay the journal on top;
3. mark every job still running as failed, with an error saying it was
   recovered, or queue it again when it was submitted with
   "on_interrupt": "retry" and has attempts left.

Pending jobs stay pending; the next "secauto serve" runs them. With
--dry-run nothing is changed and no lock is taken; the report says what
would be done.
` + exitStatus("recovery failed, for example jobs.json is unusable and no backup verifies")),
		Example: example(`
  secauto recover --dry-run
  secauto recover
  secauto recover -o json`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return recoverRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be done, change nothing")
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func recoverRun(opts *RecoverOptions) error {
	mode := exclusive
	if opts.DryRun {
		mode = readOnly
	}
	admin, err := opts.Admin(mode)
	if err != nil {
		return err
	}
	defer admin.Close()
	var rec *Recovery
	err = busy(opts.IO, "recovering", func(store.Progress) (err error) {
		rec, err = admin.Recover(context.Background(), opts.DryRun)
		return err
	})
	if err != nil {
		return err
	}
	if rec.Daemon != "" {
		// The daemon recovered the data directory when it started and its
		// running jobs are live: nothing is changed now, and what it
		// answered is the report of its start.
		since := rec.StartedAt.UTC().Format(time.RFC3339)
		if opts.DryRun {
			fmt.Fprintf(opts.IO.ErrOut, "%s holds data directory %s and recovered it when it started at %s; its running jobs are live, so there is nothing to recover while it runs ('secauto recover' shows what it did at start)\n", rec.Daemon, admin.Dir(), since)
		} else {
			fmt.Fprintf(opts.IO.ErrOut, "%s holds data directory %s and already recovered it when it started at %s; this is its report of that recovery, and nothing was changed now\n", rec.Daemon, admin.Dir(), since)
		}
	}
	res, rep := &rec.RecoverResult, rec.Repaired
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, res)
	}
	w := &errWriter{w: opts.IO.Out}
	cs := opts.IO.ColorScheme()
	if opts.DryRun {
		if len(rep.Problems) == 0 && len(res.Actions) == 0 {
			w.printf("Nothing to recover: the journal and jobs.json are intact and no job needs recovering\n")
		}
		for _, p := range rep.Problems {
			w.printf("Would repair %s\n", p)
		}
		for _, a := range res.Actions {
			w.printf("Would mark job %s %s: %s\n", a.JobID, cs.Status(string(a.To)), a.Reason)
		}
		if res.Pending > 0 {
			w.printf("%s would be run by the next 'secauto serve'\n", plural(res.Pending, "pending job"))
		}
		return w.err
	}
	printRepairs(w, rep)
	for _, a := range res.Actions {
		w.printf("Marked job %s %s: %s\n", a.JobID, cs.Status(string(a.To)), a.Reason)
	}
	repaired := rep.JournalTruncatedBytes > 0 || rep.SnapshotCorruptPath != "" || rep.RestoredFrom != ""
	if !repaired && len(res.Actions) == 0 {
		w.printf("Nothing to recover: the journal and jobs.json are intact and no job was running\n")
	}
	if res.Pending > 0 {
		w.printf("%s will be run by the next 'secauto serve'\n", plural(res.Pending, "pending job"))
	}
	return w.err
}
