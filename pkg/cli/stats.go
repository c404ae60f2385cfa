package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/spf13/cobra"
)

// StatsOptions holds "stats"'s flags and dependencies.
type StatsOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	Output outputFormat
}

// NewCmdStats is "secauto stats".
func NewCmdStats(f *Factory, runF func(*StatsOptions) error) *cobra.Command {
	opts := &StatsOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "stats")}
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show job counts, store size, workers and maintenance times",
		Long: strings.TrimSpace(`
Show what GET /stats answers: jobs by status, the size of the store, the
workers and the queue, the last and next backup and cleanup, and the webhook
backlog. With -o json it is the same object as the API's.

While the daemon runs, it answers. With no daemon the figures are computed
from the store: no uptime and no busy worker then, the workers serve would
run, the pending jobs it would queue, and "offline": true.
` + exitStatus("")),
		Example: example(`
  secauto stats
  secauto stats -o json | jq .jobs.failed`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return statsRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func statsRun(opts *StatsOptions) error {
	var res *server.StatsResponse
	err := withJobAdmin(opts.Admin, readOnly, func(a jobAdmin) (err error) {
		res, err = a.Stats(context.Background())
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, res)
	}
	tty, now, cs := opts.IO.IsStdoutTTY(), opts.Now(), opts.IO.ColorScheme()
	when := func(t *time.Time, none string) string {
		if t == nil || t.IsZero() {
			return none
		}
		return formatTime(tty, t, now)
	}
	counts := make([]string, 0, len(job.Statuses))
	for _, st := range job.Statuses {
		counts = append(counts, fmt.Sprintf("%s %d", cs.Status(string(st)), res.Jobs[st]))
	}
	t := newTable(opts.IO, "stat", "value")
	t.addRow("jobs", fmt.Sprintf("%d (%s)", res.Total, strings.Join(counts, ", ")))
	t.addRow("store", fmt.Sprintf("%s (jobs.json %s, journal %s)", humanSize(res.StoreBytes), humanSize(res.Store.SnapshotBytes), humanSize(res.Store.JournalBytes)))
	if res.Offline {
		t.addRow("daemon", "not running; figures from the store")
		t.addRow("workers", fmt.Sprintf("%d when serve runs", res.Workers))
		t.addRow("queue", fmt.Sprintf("%d pending", res.QueueLength))
	} else {
		t.addRow("daemon", fmt.Sprintf("up %s, since %s", humanDuration(time.Duration(res.UptimeSeconds*float64(time.Second))), when(res.StartedAt, "-")))
		t.addRow("workers", fmt.Sprintf("%d busy of %d", res.BusyWorkers, res.Workers))
		t.addRow("queue", fmt.Sprintf("%d waiting", res.QueueLength))
	}
	t.addRow("last backup", when(res.LastBackup, "never")+errNote(res.BackupError))
	t.addRow("next backup", when(res.NextBackup, "off"))
	t.addRow("last cleanup", when(res.LastCleanup, "never")+errNote(res.CleanupError))
	t.addRow("next cleanup", when(res.NextCleanup, "off"))
	t.addRow("webhooks", fmt.Sprintf("%d waiting, %d dead letters", res.WebhookBacklog, res.WebhookDeadLetters))
	if res.ShuttingDown {
		t.addRow("state", cs.Yellow("shutting down"))
	}
	return t.render()
}

func errNote(msg string) string {
	if msg == "" {
		return ""
	}
	return "; last run failed: " + truncate(msg, 120)
}
