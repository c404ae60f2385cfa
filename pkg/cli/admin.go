package cli

// Every command that administers the data directory does its work through
// an Admin: on the files when no daemon holds the directory (offline.go),
// or by asking the daemon that holds it (daemon_admin.go, SPEC §6). The
// choice between the two is made once, in openAdmin; the commands print
// what either answers the same way. Command groups that need more of an
// Admin declare it as an interface both implement: webhookAdmin
// (webhooks.go) and jobAdmin (jobadmin.go).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// Admin does the commands' work on one data directory. Both
// implementations answer with the store's result types, paths named
// through the data directory as the command was given it, so that a
// command prints the same output whichever did the work. Errors are
// sentences for the operator; a directory held by a daemon that cannot be
// asked is an error with exit status 2.
type Admin interface {
	// Dir is the data directory, as --data-dir or the config names it.
	Dir() string

	// ListJobs lists jobs, newest first.
	ListJobs(ctx context.Context, f store.Filter) ([]*job.Job, error)
	// GetJob finds a job by id or unique id prefix; the error wraps
	// store.ErrNotFound or store.ErrAmbiguous when that is why it did not.
	GetJob(ctx context.Context, idOrPrefix string) (*job.Job, error)

	// Cleanup deletes (with o.DryRun, lists) the terminal jobs past the
	// retention in o.
	Cleanup(ctx context.Context, o store.CleanupOptions) (*store.CleanupResult, error)
	// Backup writes a backup with the jobs.backup_keep and
	// jobs.backup_compress of whoever does the work (the daemon's own
	// configuration while it runs), compressed as compress says when set.
	Backup(ctx context.Context, compress *bool, progress store.Progress) (*store.BackupResult, error)
	// ListBackups describes the backups, newest first, each verified.
	ListBackups(ctx context.Context) ([]store.BackupInfo, error)
	// Restore replaces the jobs with those of the backup at path, which
	// the caller has verified, after saving the current state as a safety
	// backup. It never deletes a backup.
	Restore(ctx context.Context, path string, progress store.Progress) (*Restored, error)
	// Verify checks the data directory without changing it.
	Verify(ctx context.Context, progress store.Progress) (*store.VerifyResult, error)
	// Recover runs crash recovery (SPEC §5), or with dryRun reports what
	// it would do. A daemon recovered the directory when it started and
	// answers with the report of that.
	Recover(ctx context.Context, dryRun bool) (*Recovery, error)
	// RotateKeys re-encrypts every job not yet under the first key of
	// jobs.encryption_key_file (the daemon's own while it runs), in
	// durable batches, so that a run cut short is resumed by the next.
	RotateKeys(ctx context.Context, progress store.Progress) (*store.RotateResult, error)

	// Close lets go of what the Admin holds; the data directory itself is
	// closed after each operation.
	Close() error
}

// Restored is what Admin.Restore did.
type Restored struct {
	store.RestoreResult
	// Repaired is what opening the data directory repaired first; a
	// daemon repaired it when it started, so it reports nothing here.
	Repaired store.OpenReport
	// Imported is the copy of a file from outside the data directory
	// that a daemon restored, since it restores only its own backups.
	Imported string
}

// Recovery is what Admin.Recover did, or would do.
type Recovery struct {
	store.RecoverResult
	// Repaired is what opening the data directory repaired.
	Repaired store.OpenReport
	// Daemon names the daemon that answered ("secauto serve (pid 123)"),
	// which recovered the directory at StartedAt and changed nothing now;
	// empty offline.
	Daemon    string
	StartedAt time.Time
}

// lockMode says how a command uses the data directory, as restic's
// commands do: reading needs no lock and repairs nothing; writing takes
// the lock.
type lockMode int

const (
	readOnly lockMode = iota
	exclusive
	// salvage is exclusive for "backup restore": a jobs.json that is
	// unusable with no backup to fall back on is moved aside instead of
	// stopping the open, since the restore replaces the jobs next.
	salvage
	// creating is exclusive for "run": a job queued before the first
	// serve creates the data directory, as serve would.
	creating
)

// adminFor returns the opener a command's options hold: the command names
// itself once, and its run function names the lock mode it needs.
func adminFor(f *Factory, command string) func(lockMode) (Admin, error) {
	return func(mode lockMode) (Admin, error) { return f.OpenAdmin(command, mode) }
}

// openAdmin is the one place that decides whether a command works on the
// files or asks a daemon: the daemon that holds the data directory, found
// through its lock, does the work while it runs. A directory held by a
// daemon that cannot be asked is an error with exit status 2; one held by
// another command (no daemon) is left to the offline Admin, beside which
// reading works and writing stops with a *store.LockedError.
func (f *Factory) openAdmin(command string, mode lockMode) (Admin, error) {
	// A shared database needs no daemon between a command and the jobs:
	// every node and command write it in transactions, and the data
	// directory only receives backups.
	shared := false
	if cfg, err := f.Config(); err == nil && cfg.Store.Driver == "postgres" {
		shared = true
	}
	find := f.existingStoreDir
	if mode == creating || shared {
		find = f.StoreDir
	}
	dir, err := find()
	if err != nil {
		return nil, err
	}
	var d *daemonClient
	if !shared {
		if d, err = findDaemon(dir, f.Config, f.Build.Version); err != nil {
			return nil, err
		}
	}
	if d != nil {
		if mode != readOnly {
			// A daemon that cannot do the change is reported before
			// anything is read or verified for it.
			if err := d.ping(context.Background()); err != nil {
				return nil, err
			}
		}
		return d, nil
	}
	return &offlineAdmin{
		dir:     dir,
		mode:    mode,
		command: command,
		config:  f.Config,
		errOut:  f.IOStreams.ErrOut,
		now:     f.Now,
	}, nil
}

// findDaemon returns a client for the "secauto serve" that holds dir; nil
// when no daemon holds it.
func findDaemon(dir string, cfg func() (*config.Config, error), version string) (*daemonClient, error) {
	held, owner, err := store.Locked(dir)
	if err != nil || !held {
		return nil, nil // unreadable lock file: opening the store reports what is wrong
	}
	if owner.Address == "" && !strings.HasSuffix(owner.Command, " serve") {
		return nil, nil
	}
	locked := &store.LockedError{Path: filepath.Join(dir, store.LockFile), Owner: owner}
	if host, _ := os.Hostname(); owner.Host != "" && host != "" && owner.Host != host {
		return nil, &daemonError{
			msg:    fmt.Sprintf("%s on host %s holds data directory %s; run this command on %s, where its API listens", describeOwner(owner), owner.Host, dir, owner.Host),
			locked: locked,
		}
	}
	if owner.Address == "" {
		return nil, &daemonError{
			msg:    fmt.Sprintf("%s holds data directory %s but has not recorded where its API listens yet; if it is starting, run this command again in a moment, else stop it and run this command again", describeOwner(owner), dir),
			locked: locked,
		}
	}
	c, err := cfg()
	if err != nil {
		return nil, err
	}
	token := ""
	if len(c.Server.AuthTokens) > 0 {
		token = c.Server.AuthTokens[0]
	}
	d := newDaemonClient(dir, owner, token, version)
	if strings.HasPrefix(owner.Address, server.TLSScheme) {
		// The daemon's certificate is trusted as server.tls_cert of this
		// command's configuration gives it, so a self-signed one works.
		tc, err := c.ClientTLS()
		if err != nil {
			return nil, &configError{err}
		}
		d.trust(tc)
	}
	return d, nil
}
