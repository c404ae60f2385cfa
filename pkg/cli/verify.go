package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// VerifyOptions holds "verify"'s flags and dependencies.
type VerifyOptions struct {
	IO    *IOStreams
	Admin func(lockMode) (Admin, error)

	Output outputFormat
}

// NewCmdVerify is "secauto verify".
func NewCmdVerify(f *Factory, runF func(*VerifyOptions) error) *cobra.Command {
	opts := &VerifyOptions{IO: f.IOStreams, Admin: adminFor(f, "verify")}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the snapshot, journal, backups and job invariants",
		Long: strings.TrimSpace(`
Check the data directory without changing it: jobs.json parses and every
job keeps its invariants, every journal record is intact, every webhook
event waiting in the outbox (secauto.state.json) is readable, and every
backup matches its checksum and holds valid jobs.

Every problem is printed, followed by the commands that repair it. With
-o json the summary is printed even when problems are found. While the
daemon runs, it does the check and answers.
` + exitStatus("problems were found")),
		Example: example(`
  secauto verify
  secauto verify -o json | jq '.problems[]'`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return verifyRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func verifyRun(opts *VerifyOptions) error {
	admin, err := opts.Admin(readOnly)
	if err != nil {
		return err
	}
	defer admin.Close()
	var res *store.VerifyResult
	var backups []store.BackupInfo
	err = busy(opts.IO, "verifying", func(progress store.Progress) (err error) {
		res, err = admin.Verify(context.Background(), progress)
		if err == nil && !res.OK {
			// Only needed to point at a backup to restore, and to tell
			// the damaged backups among the problems.
			backups, _ = admin.ListBackups(context.Background())
		}
		return err
	})
	if err != nil {
		return err
	}
	if res.Problems == nil {
		res.Problems = []store.Problem{}
	}
	if opts.Output != formatTable {
		if err := printData(opts.IO.Out, opts.Output, res); err != nil {
			return err
		}
		if !res.OK {
			return errSilent
		}
		return nil
	}
	w := &errWriter{w: opts.IO.Out}
	cs := opts.IO.ColorScheme()
	summary := fmt.Sprintf("%s, %s, %s", plural(res.Jobs, "job"), plural(res.Journal, "journal record"), plural(res.Backups, "backup"))
	if res.OK {
		w.printf("%s: %s\n", cs.Green("no problems found"), summary)
		return w.err
	}
	for _, p := range res.Problems {
		w.printf("%s %s\n", cs.Red("problem:"), problemText(p))
	}
	w.printf("\n%s found (%s)\n", plural(len(res.Problems), "problem"), summary)
	fixes := repairs(res.Problems, backups)
	if len(fixes) > 0 {
		w.printf("To repair:\n")
		for _, fx := range fixes {
			w.printf("  %s\n      %s\n", cs.Bold(fx.command), cs.Gray(fx.why))
		}
	}
	if w.err != nil {
		return w.err
	}
	return errSilent
}

func problemText(p store.Problem) string {
	p.File = relPath(p.File)
	return p.String()
}

// repair is a command that fixes problems verify found, and why.
type repair struct{ command, why string }

// repairs lists the commands that fix the problems found, most useful
// first.
func repairs(problems []store.Problem, backups []store.BackupInfo) []repair {
	var snapshot, journal bool
	var badBackups, keys []string
	seen := map[string]bool{}
	for _, p := range problems {
		base := filepath.Base(p.File)
		switch {
		case p.MissingKeyID != "":
			// Nothing is damaged: a key is missing.
			if !slices.Contains(keys, p.MissingKeyID) {
				keys = append(keys, p.MissingKeyID)
			}
		case base == store.SnapshotFile:
			snapshot = true
		case base == store.JournalFile:
			journal = true
		case isBackup(base) && !seen[p.File]:
			seen[p.File] = true
			badBackups = append(badBackups, p.File)
		}
	}
	good := "FILE"
	for _, b := range backups { // newest first
		if b.Verified {
			good = relPath(b.Path)
			break
		}
	}
	var out []repair
	if len(keys) > 0 {
		out = append(out, repair{"add the key with id " + strings.Join(keys, ", ") + " to jobs.encryption_key_file",
			"nothing is damaged: the jobs are encrypted with a key this configuration lacks (after the first line: the first key encrypts)"})
	}
	if snapshot || journal {
		out = append(out,
			repair{"secauto recover", "cuts damaged journal records and takes damaged or unusable jobs from the newest backup that verifies"},
			repair{"secauto backup restore " + good, "or restores the backup you choose instead"})
	}
	for _, b := range badBackups {
		p := relPath(b)
		out = append(out, repair{fmt.Sprintf("rm %s %s", p, checksumFile(p)), "a damaged backup cannot be repaired; remove it"})
	}
	if len(badBackups) > 0 {
		out = append(out, repair{"secauto backup create", "then write a fresh backup"})
	}
	return out
}

// isBackup reports whether a file's base name is a backup's, by the
// store's rule.
func isBackup(base string) bool {
	_, ok := store.ParseBackupName(base)
	return ok
}

// checksumFile names the .sha256 file beside a backup (SPEC §4), for the
// operator to remove with it.
func checksumFile(backup string) string { return backup + ".sha256" }
