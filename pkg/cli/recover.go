package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
	"github.com/spf13/cobra"
)

// RecoverOptions holds "recover"'s flags and dependencies.
type RecoverOptions struct {
	IO      *IOStreams
	Recover func(dryRun bool) (*store.RecoverResult, store.OpenReport, error)

	DryRun bool
	Output outputFormat
}

// NewCmdRecover is "secauto recover".
func NewCmdRecover(f *Factory, runF func(*RecoverOptions) error) *cobra.Command {
	opts := &RecoverOptions{IO: f.IOStreams, Recover: f.recover}
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

func (f *Factory) recover(dryRun bool) (res *store.RecoverResult, rep store.OpenReport, err error) {
	d, err := f.daemon()
	if err != nil {
		return nil, rep, err
	}
	if d != nil {
		return f.recoverByDaemon(d, dryRun)
	}
	mode := exclusive
	if dryRun {
		mode = readOnly
	}
	outbox, err := f.outbox()
	if err != nil {
		return nil, rep, err
	}
	err = f.withStore(mode, "recover", "recovering", func(s *store.Store, _ store.Progress) error {
		rep = s.Report()
		// The job.recovered events wait in the outbox, written with the
		// jobs they announce, until the next serve delivers them.
		res, err = s.Recover(store.RecoverOptions{DryRun: dryRun, Also: outbox.JobRecords(webhook.JobRecovered)})
		if err != nil {
			return fmt.Errorf("recovery failed: %w", err)
		}
		return nil
	})
	return res, rep, err
}

// recoverByDaemon reports recovery while a daemon runs: it recovered the
// data directory when it started and its running jobs are live, so nothing
// is changed now; the report is the one of its start.
func (f *Factory) recoverByDaemon(d *daemonClient, dryRun bool) (*store.RecoverResult, store.OpenReport, error) {
	ans, err := d.recover(dryRun)
	if err != nil {
		return nil, store.OpenReport{}, err
	}
	since := ans.StartedAt.UTC().Format(time.RFC3339)
	if dryRun {
		fmt.Fprintf(f.IOStreams.ErrOut, "%s holds data directory %s and recovered it when it started at %s; its running jobs are live, so there is nothing to recover while it runs ('secauto recover' shows what it did at start)\n", d.who(), d.dir, since)
		return &ans.RecoverResult, store.OpenReport{}, nil
	}
	fmt.Fprintf(f.IOStreams.ErrOut, "%s holds data directory %s and already recovered it when it started at %s; this is its report of that recovery, and nothing was changed now\n", d.who(), d.dir, since)
	return &ans.RecoverResult, ans.OpenReport, nil
}

func recoverRun(opts *RecoverOptions) error {
	res, rep, err := opts.Recover(opts.DryRun)
	if err != nil {
		return err
	}
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
