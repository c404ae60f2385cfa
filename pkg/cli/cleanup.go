package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// CleanupOptions holds "cleanup"'s flags and dependencies.
type CleanupOptions struct {
	IO *IOStreams
	// Retention returns the configured retention and per-status overrides.
	Retention func() (time.Duration, map[job.Status]time.Duration, error)
	Admin     func(lockMode) (Admin, error)

	DryRun    bool
	OlderThan string
	Output    outputFormat
}

// NewCmdCleanup is "secauto cleanup".
func NewCmdCleanup(f *Factory, runF func(*CleanupOptions) error) *cobra.Command {
	opts := &CleanupOptions{IO: f.IOStreams, Retention: configuredRetention(f.Config), Admin: adminFor(f, "cleanup")}
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Delete terminal jobs older than the retention",
		Long: strings.TrimSpace(`
Delete completed, failed and cancelled jobs that completed longer ago than
their retention: jobs.retention_by_status for their status, else
jobs.retention_days. Pending and running jobs are never deleted.

--older-than replaces the configured retention for every status.
--dry-run only lists what would be deleted; it takes no lock and is safe
while the daemon runs.
` + exitStatus("")),
		Example: example(`
  # what the configured retention would delete
  secauto cleanup --dry-run

  # delete every terminal job that ended more than a week ago
  secauto cleanup --older-than 7d

  # nightly, from cron
  30 3 * * *  cd /srv/secauto && secauto cleanup -o json >>logs/cleanup.log`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return cleanupRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would be deleted, delete nothing")
	cmd.Flags().StringVar(&opts.OlderThan, "older-than", "", "delete terminal jobs that ended more than DURATION ago (30d, 12h), for every status")
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

// configuredRetention returns jobs.retention_days and
// jobs.retention_by_status from the configuration.
func configuredRetention(load func() (*config.Config, error)) func() (time.Duration, map[job.Status]time.Duration, error) {
	return func() (time.Duration, map[job.Status]time.Duration, error) {
		cfg, err := load()
		if err != nil {
			return 0, nil, err
		}
		return cfg.Jobs.Retention(""), cfg.Jobs.RetentionOverrides(), nil
	}
}

func cleanupRun(opts *CleanupOptions) error {
	co := store.CleanupOptions{DryRun: opts.DryRun}
	if opts.OlderThan != "" {
		d, err := parseOlderThan(opts.OlderThan)
		if err != nil {
			return err
		}
		co.Retention = d
	} else {
		ret, byStatus, err := opts.Retention()
		if err != nil {
			return err
		}
		co.Retention, co.ByStatus = ret, byStatus
	}
	mode := exclusive
	if opts.DryRun {
		mode = readOnly
	}
	admin, err := opts.Admin(mode)
	if err != nil {
		return err
	}
	defer admin.Close()
	var res *store.CleanupResult
	err = busy(opts.IO, "cleaning up", func(store.Progress) (err error) {
		res, err = admin.Cleanup(context.Background(), co)
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, res)
	}
	w := &errWriter{w: opts.IO.Out}
	rule := describeRetention(co)
	switch {
	case res.DryRun && res.Deleted == 0:
		w.printf("Would delete no jobs (%s)\n", rule)
	case res.DryRun:
		w.printf("Would delete %s (%s):\n", plural(res.Deleted, "job"), rule)
		for _, id := range res.IDs {
			w.printf("  %s\n", id)
		}
	default:
		w.printf("Deleted %s (%s)\n", plural(res.Deleted, "job"), rule)
	}
	return w.err
}

// describeRetention says which jobs the cleanup selects, e.g.
// "terminal jobs older than 30d; failed older than 90d".
func describeRetention(o store.CleanupOptions) string {
	s := "terminal jobs older than " + config.FormatDuration(o.Retention)
	var parts []string
	for st, d := range o.ByStatus {
		parts = append(parts, fmt.Sprintf("%s older than %s", st, config.FormatDuration(d)))
	}
	sort.Strings(parts)
	if len(parts) > 0 {
		s += "; " + strings.Join(parts, ", ")
	}
	return s
}
