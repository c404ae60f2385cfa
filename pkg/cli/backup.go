package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// NewCmdBackup is "secauto backup".
func NewCmdBackup(f *Factory) *cobra.Command {
	cmd := groupCommand("backup",
		"Create, list and restore backups of the job store",
		strings.TrimSpace(`
Backups are complete snapshots of the job store, written into the data
directory as jobs.json.backup.YYYYMMDD-HHMMSS (with .gz when compressed)
beside a .sha256 file in the format "sha256sum -c" reads.
`+exitStatus("")),
		example(`
  secauto backup create
  secauto backup list
  secauto backup restore data/jobs.json.backup.20250709-143000`))
	cmd.AddCommand(NewCmdBackupCreate(f, nil), NewCmdBackupList(f, nil), NewCmdBackupRestore(f, nil))
	return cmd
}

// BackupCreateOptions holds "backup create"'s flags and dependencies.
type BackupCreateOptions struct {
	IO *IOStreams
	// Backup writes a backup with the configured compression and keep
	// count (or the flag's compression) and returns its result.
	Backup func(compress *bool) (*store.BackupResult, error)

	Compress *bool // nil: as configured
	Output   outputFormat
}

// NewCmdBackupCreate is "secauto backup create".
func NewCmdBackupCreate(f *Factory, runF func(*BackupCreateOptions) error) *cobra.Command {
	opts := &BackupCreateOptions{IO: f.IOStreams, Backup: func(compress *bool) (*store.BackupResult, error) {
		return f.backup(compress)
	}}
	var compress bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Write a consistent backup now",
		Long: strings.TrimSpace(`
Write a consistent backup of the job store now, with its checksum, then
delete the oldest backups beyond jobs.backup_keep.

Compression follows jobs.backup_compress unless --compress is given.
` + exitStatus("")),
		Example: example(`
  secauto backup create
  secauto backup create --compress -o json`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("compress") {
				opts.Compress = &compress
			}
			if runF != nil {
				return runF(opts)
			}
			return backupCreateRun(opts)
		},
	}
	cmd.Flags().BoolVar(&compress, "compress", false, "gzip the backup (default: jobs.backup_compress)")
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func (f *Factory) backup(compress *bool) (res *store.BackupResult, err error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	d, err := f.daemon()
	if err != nil {
		return nil, err
	}
	if d != nil {
		// The daemon's jobs.backup_keep and jobs.backup_compress apply.
		err = busy(f.IOStreams, "writing backup", func(store.Progress) error {
			res, err = d.backup(compress)
			return err
		})
		return res, err
	}
	bo := store.BackupOptions{Compress: cfg.Jobs.BackupCompress, Keep: cfg.Jobs.BackupKeep}
	if compress != nil {
		bo.Compress = *compress
	}
	err = f.withStore(exclusive, "backup create", "writing backup", func(s *store.Store, progress store.Progress) error {
		bo.Progress = progress
		res, err = s.Backup(bo)
		if err != nil {
			return fmt.Errorf("cannot write backup: %w", err)
		}
		return nil
	})
	return res, err
}

func backupCreateRun(opts *BackupCreateOptions) error {
	res, err := opts.Backup(opts.Compress)
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, res)
	}
	w := &errWriter{w: opts.IO.Out}
	cs := opts.IO.ColorScheme()
	w.printf("%s %s (%s, %s)\n", cs.Green("Wrote backup"), relPath(res.Path), plural(res.Jobs, "job"), humanSize(res.Size))
	w.printf("sha256: %s\n", res.SHA256)
	for _, r := range res.Removed {
		w.printf("Removed old backup %s\n", relPath(r))
	}
	return w.err
}

// BackupListOptions holds "backup list"'s flags and dependencies.
type BackupListOptions struct {
	IO          *IOStreams
	Now         func() time.Time
	ListBackups func() (dir string, backups []store.BackupInfo, err error)

	Output outputFormat
}

// NewCmdBackupList is "secauto backup list".
func NewCmdBackupList(f *Factory, runF func(*BackupListOptions) error) *cobra.Command {
	opts := &BackupListOptions{IO: f.IOStreams, Now: f.Now, ListBackups: f.listBackups}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backups, newest first, and verify each",
		Long: strings.TrimSpace(`
List the backups in the data directory, newest first, with size, job count
and whether the backup's checksum and content verify. Reads only; safe
while the daemon runs.
` + exitStatus("")),
		Example: example(`
  secauto backup list
  secauto backup list -o json | jq -r '.[] | select(.verified) | .path' | head -1`),
		Aliases: []string{"ls"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return backupListRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func (f *Factory) listBackups() (string, []store.BackupInfo, error) {
	dir, err := f.existingStoreDir()
	if err != nil {
		return "", nil, err
	}
	d, err := f.daemon()
	if err != nil {
		return "", nil, err
	}
	var list []store.BackupInfo
	err = busy(f.IOStreams, "verifying backups", func(store.Progress) error {
		if d != nil {
			list, err = d.listBackups()
			return err
		}
		list, err = store.ListBackups(dir)
		if err != nil {
			return fmt.Errorf("cannot list backups: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return dir, list, nil
}

func backupListRun(opts *BackupListOptions) error {
	dir, list, err := opts.ListBackups()
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		if list == nil {
			list = []store.BackupInfo{}
		}
		return printData(opts.IO.Out, opts.Output, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "no backups in %s; write one with 'secauto backup create'\n", dir)
		return nil
	}
	tty := opts.IO.IsStdoutTTY()
	cs := opts.IO.ColorScheme()
	now := opts.Now()
	t := newTable(opts.IO, "backup", "created", "size", "jobs", "verified")
	for _, b := range list {
		verified := cs.Green("yes")
		if !b.Verified {
			verified = cs.Red("no")
			if b.Problem != "" {
				verified += ": " + b.Problem
			}
		}
		jobs := "-" // unknown: the content did not verify
		if b.Verified {
			jobs = fmt.Sprint(b.Jobs)
		}
		if tty {
			verified = truncate(verified, 60)
		}
		created := b.Time
		t.addRow(relPath(b.Path), formatTime(tty, &created, now), humanSize(b.Size), jobs, verified)
	}
	return t.render()
}

// BackupRestoreOptions holds "backup restore"'s flags and dependencies.
type BackupRestoreOptions struct {
	IO      *IOStreams
	Restore func(file string) (*restoreOutcome, error)

	File   string
	Output outputFormat
}

// restoreOutcome is what a restore did, for the human report.
type restoreOutcome struct {
	store.RestoreResult
	File         string `json:"-"`
	VerifiedJobs int    `json:"-"`
	// Repaired is what opening the data directory repaired first.
	Repaired store.OpenReport `json:"-"`
}

// NewCmdBackupRestore is "secauto backup restore".
func NewCmdBackupRestore(f *Factory, runF func(*BackupRestoreOptions) error) *cobra.Command {
	opts := &BackupRestoreOptions{IO: f.IOStreams, Restore: f.restore}
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the job store with a backup",
		Long: strings.TrimSpace(`
Replace every job in the store with the jobs in FILE.

FILE is verified first (checksum and content); a file that does not verify
is refused and nothing changes. Then the current state is saved as a new
backup (the safety backup, printed at the end) so the restore can itself be
undone, and the store is replaced. FILE may be a path or the name of a
backup in the data directory, as "backup list" shows it.

While the daemon runs, it does the restore: jobs it is running are stopped
and recorded failed first (they are in the safety backup), and the jobs
pending in FILE are run afterwards.
` + exitStatus("FILE does not verify, or the restore failed; the store is unchanged")),
		Example: example(`
  secauto backup list
  secauto backup restore data/jobs.json.backup.20250709-143000
  secauto verify`),
		Args: exactArgs(1, "backup FILE"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeBackups(f, toComplete), cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if runF != nil {
				return runF(opts)
			}
			return backupRestoreRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

// completeBackups offers the data directory's backups, newest first.
func completeBackups(f *Factory, prefix string) []string {
	dir, err := f.StoreDir()
	if err != nil {
		return nil
	}
	matches, _ := filepath.Glob(filepath.Join(dir, store.SnapshotFile+".backup.*"))
	var out []string
	for i := len(matches) - 1; i >= 0; i-- {
		m := matches[i]
		if strings.HasSuffix(m, ".sha256") || strings.HasSuffix(m, ".tmp") || !strings.HasPrefix(m, prefix) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// resolveBackup finds FILE as given, else among the data directory's
// backups, so the names "backup list" prints work from anywhere.
func resolveBackup(dir, file string) (string, error) {
	if _, err := os.Stat(file); err == nil {
		return file, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("cannot read backup: %w; check its permissions", err)
	}
	if !strings.ContainsRune(file, filepath.Separator) {
		in := filepath.Join(dir, file)
		if _, err := os.Stat(in); err == nil {
			return in, nil
		}
	}
	return "", fmt.Errorf("backup %s does not exist; list backups with 'secauto backup list'", file)
}

func (f *Factory) restore(file string) (out *restoreOutcome, err error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	dir, err := f.existingStoreDir()
	if err != nil {
		return nil, err
	}
	path, err := resolveBackup(dir, file)
	if err != nil {
		return nil, err
	}
	d, err := f.daemon()
	if err != nil {
		return nil, err
	}
	if d != nil {
		// A daemon that cannot do the restore is reported before the
		// file is read.
		if err := d.ping(); err != nil {
			return nil, err
		}
	}
	// Verify before taking the lock or touching anything, as etcdutl does:
	// a bad file must leave the data directory exactly as it was.
	var jobs int
	err = busy(f.IOStreams, "verifying backup", func(store.Progress) error {
		jobs, err = verifyBackupFile(f.IOStreams, path)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s is not a usable backup (%w); nothing was changed: pick one that verifies with 'secauto backup list'", path, err)
	}
	out = &restoreOutcome{File: path, VerifiedJobs: jobs}
	if d != nil {
		// The daemon reads the file itself, on this host.
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("cannot resolve %s: %w", path, err)
		}
		err = busy(f.IOStreams, "restoring", func(store.Progress) error {
			res, err := d.restore(abs)
			if err != nil {
				return err
			}
			out.RestoreResult = *res
			return nil
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	err = f.withStore(salvage, "backup restore", "restoring", func(s *store.Store, progress store.Progress) error {
		out.Repaired = s.Report()
		// Keep every backup: a restore must never delete one.
		res, err := s.Restore(path, store.BackupOptions{Compress: cfg.Jobs.BackupCompress, Progress: progress})
		if err != nil {
			return fmt.Errorf("cannot restore %s: %w; the store is unchanged", path, err)
		}
		out.RestoreResult = *res
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// verifyBackupFile verifies a backup to be restored. A file without its
// .sha256 (an operator's own copy of jobs.json, say) has no checksum to
// check, so only its content is verified, and the operator is told.
func verifyBackupFile(ios *IOStreams, path string) (int, error) {
	n, checksummed, err := store.CheckRestoreFile(path)
	if err == nil && !checksummed {
		fmt.Fprintf(ios.ErrOut, "%s has no .sha256 file; its content verified, but whether it is the file that was backed up cannot be checked\n", path)
	}
	return n, err
}

func backupRestoreRun(opts *BackupRestoreOptions) error {
	out, err := opts.Restore(opts.File)
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, out.RestoreResult)
	}
	w := &errWriter{w: opts.IO.Out}
	cs := opts.IO.ColorScheme()
	printRepairs(w, out.Repaired)
	w.printf("Verified %s (%s)\n", relPath(out.File), plural(out.VerifiedJobs, "job"))
	w.printf("Saved the previous state as %s\n", relPath(out.SafetyBackup))
	w.printf("%s %s from %s\n", cs.Green("Restored"), plural(out.RestoredJobs, "job"), relPath(out.File))
	w.printf("To undo: secauto backup restore %s\n", relPath(out.SafetyBackup))
	return w.err
}

// printRepairs reports what opening the data directory repaired.
func printRepairs(w *errWriter, r store.OpenReport) {
	if r.JournalTruncatedBytes > 0 {
		w.printf("Cut %d bytes of damaged journal tail (kept in %s)\n", r.JournalTruncatedBytes, relPath(r.JournalCorruptPath))
	}
	if r.SnapshotCorruptPath != "" {
		w.printf("Moved corrupt %s aside to %s\n", store.SnapshotFile, relPath(r.SnapshotCorruptPath))
	}
	if r.RestoredFrom != "" {
		w.printf("Restored the snapshot from %s\n", relPath(r.RestoredFrom))
	}
}
