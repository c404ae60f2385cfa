package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
	IO    *IOStreams
	Admin func(lockMode) (Admin, error)

	Compress *bool // nil: as configured
	Output   outputFormat
}

// NewCmdBackupCreate is "secauto backup create".
func NewCmdBackupCreate(f *Factory, runF func(*BackupCreateOptions) error) *cobra.Command {
	opts := &BackupCreateOptions{IO: f.IOStreams, Admin: adminFor(f, "backup create")}
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

func backupCreateRun(opts *BackupCreateOptions) error {
	admin, err := opts.Admin(exclusive)
	if err != nil {
		return err
	}
	defer admin.Close()
	var res *store.BackupResult
	err = busy(opts.IO, "writing backup", func(progress store.Progress) (err error) {
		res, err = admin.Backup(context.Background(), opts.Compress, progress)
		return err
	})
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
	if len(res.KeyIDs) > 0 {
		w.printf("encrypted: restoring it needs key id %s\n", strings.Join(res.KeyIDs, ", "))
	}
	for _, r := range res.Removed {
		w.printf("Removed old backup %s\n", relPath(r))
	}
	return w.err
}

// BackupListOptions holds "backup list"'s flags and dependencies.
type BackupListOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	Output outputFormat
}

// NewCmdBackupList is "secauto backup list".
func NewCmdBackupList(f *Factory, runF func(*BackupListOptions) error) *cobra.Command {
	opts := &BackupListOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "backup list")}
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

func backupListRun(opts *BackupListOptions) error {
	admin, err := opts.Admin(readOnly)
	if err != nil {
		return err
	}
	defer admin.Close()
	var list []store.BackupInfo
	err = busy(opts.IO, "verifying backups", func(store.Progress) (err error) {
		list, err = admin.ListBackups(context.Background())
		return err
	})
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
		fmt.Fprintf(opts.IO.ErrOut, "no backups in %s; write one with 'secauto backup create'\n", admin.Dir())
		return nil
	}
	tty := opts.IO.IsStdoutTTY()
	cs := opts.IO.ColorScheme()
	now := opts.Now()
	// The keys a backup needs are shown once any backup is encrypted.
	sealed := slices.ContainsFunc(list, func(b store.BackupInfo) bool { return len(b.KeyIDs) > 0 })
	cols := []string{"backup", "created", "size", "jobs", "verified"}
	if sealed {
		cols = []string{"backup", "created", "size", "jobs", "keys", "verified"}
	}
	t := newTable(opts.IO, cols...)
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
		if sealed {
			keys := strings.Join(b.KeyIDs, ",")
			if keys == "" {
				keys = "-"
			}
			t.addRow(relPath(b.Path), formatTime(tty, &created, now), humanSize(b.Size), jobs, keys, verified)
			continue
		}
		t.addRow(relPath(b.Path), formatTime(tty, &created, now), humanSize(b.Size), jobs, verified)
	}
	return t.render()
}

// BackupRestoreOptions holds "backup restore"'s flags and dependencies.
type BackupRestoreOptions struct {
	IO    *IOStreams
	Admin func(lockMode) (Admin, error)
	// Resolve finds FILE: resolveBackup outside tests.
	Resolve func(dir, file string) (string, error)
	// Check verifies the file to restore: store.CheckRestoreFile outside
	// tests.
	Check func(path string) (jobs int, checksummed bool, err error)

	File   string
	Output outputFormat
}

// NewCmdBackupRestore is "secauto backup restore".
func NewCmdBackupRestore(f *Factory, runF func(*BackupRestoreOptions) error) *cobra.Command {
	opts := &BackupRestoreOptions{IO: f.IOStreams, Admin: adminFor(f, "backup restore"), Resolve: resolveBackup, Check: store.CheckRestoreFile}
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
pending in FILE are run afterwards. The daemon restores only backups of
its data directory, so a FILE from elsewhere is first copied in beside
them (with its .sha256 file) under a backup name of its own.
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

// completeBackups offers the data directory's backups, newest first. The
// store's name rule says which files are backups: reading their names is
// quick, verifying them ("backup list") is not.
func completeBackups(f *Factory, prefix string) []string {
	dir, err := f.StoreDir()
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir(dir)
	type backup struct {
		path string
		at   time.Time
	}
	var found []backup
	for _, e := range ents {
		at, ok := store.ParseBackupName(e.Name())
		p := filepath.Join(dir, e.Name())
		if ok && e.Type().IsRegular() && strings.HasPrefix(p, prefix) {
			found = append(found, backup{p, at})
		}
	}
	slices.SortFunc(found, func(a, b backup) int {
		if c := b.at.Compare(a.at); c != 0 {
			return c
		}
		return strings.Compare(b.path, a.path)
	})
	out := make([]string, len(found))
	for i, b := range found {
		out[i] = b.path
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

func backupRestoreRun(opts *BackupRestoreOptions) error {
	admin, err := opts.Admin(salvage)
	if err != nil {
		return err
	}
	defer admin.Close()
	path, err := opts.Resolve(admin.Dir(), opts.File)
	if err != nil {
		return err
	}
	// Verify before touching anything, as etcdutl does: a bad file must
	// leave the data directory exactly as it was.
	var jobs int
	err = busy(opts.IO, "verifying backup", func(store.Progress) error {
		n, checksummed, err := opts.Check(path)
		if err == nil && !checksummed {
			// An operator's own copy of jobs.json, say: there is no
			// checksum to check, so only its content was verified.
			fmt.Fprintf(opts.IO.ErrOut, "%s has no .sha256 file; its content verified, but whether it is the file that was backed up cannot be checked\n", path)
		}
		jobs = n
		return err
	})
	if err != nil {
		return fmt.Errorf("%s is not a usable backup (%w); nothing was changed: pick one that verifies with 'secauto backup list'", path, err)
	}
	var out *Restored
	err = busy(opts.IO, "restoring", func(progress store.Progress) (err error) {
		out, err = admin.Restore(context.Background(), path, progress)
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, out.RestoreResult)
	}
	w := &errWriter{w: opts.IO.Out}
	cs := opts.IO.ColorScheme()
	printRepairs(w, out.Repaired)
	w.printf("Verified %s (%s)\n", relPath(path), plural(jobs, "job"))
	if out.Imported != "" {
		w.printf("Copied it into the data directory as %s\n", relPath(out.Imported))
	}
	w.printf("Saved the previous state as %s\n", relPath(out.SafetyBackup))
	w.printf("%s %s from %s\n", cs.Green("Restored"), plural(out.RestoredJobs, "job"), relPath(path))
	w.printf("To undo: secauto backup restore %s\n", relPath(out.SafetyBackup))
	return w.err
}

// printRepairs reports what opening the data directory repaired.
func printRepairs(w *errWriter, r store.OpenReport) {
	if r.JournalTruncatedBytes > 0 {
		w.printf("Cut %d bytes of damaged journal (kept in %s)\n", r.JournalTruncatedBytes, relPath(r.JournalCorruptPath))
	}
	if r.SnapshotCorruptPath != "" {
		w.printf("Moved corrupt %s aside to %s\n", store.SnapshotFile, relPath(r.SnapshotCorruptPath))
	}
	if r.RecordsCorruptPath != "" {
		w.printf("Kept the damaged %s as %s and rebuilt it\n", store.RecordsFile, relPath(r.RecordsCorruptPath))
	}
	switch {
	case len(r.RestoredJobs) > 0:
		for _, id := range r.RestoredJobs {
			w.printf("Took job %s from %s\n", id, relPath(r.RestoredFrom))
		}
	case r.RestoredFrom != "":
		w.printf("Restored the snapshot from %s\n", relPath(r.RestoredFrom))
	}
	for _, id := range r.LostJobs {
		w.printf("Lost job %s: its newest state was in the damaged bytes and no verified backup holds it\n", id)
	}
}
