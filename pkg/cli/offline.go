package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// offlineAdmin works on the files of a data directory no daemon holds.
// Each operation opens the store in the mode it needs, never beyond the
// mode the command asked for, and closes it before returning, so that
// jobs.json is complete and the lock free once the operation answered.
type offlineAdmin struct {
	dir     string
	mode    lockMode // the most the command may do
	command string   // "backup create": recorded as the lock's owner
	config  func() (*config.Config, error)
	errOut  io.Writer
	now     func() time.Time
}

func (a *offlineAdmin) Dir() string  { return a.dir }
func (a *offlineAdmin) Close() error { return nil }

// writeMode is the mode of an operation that changes the data directory:
// the command's own, which must allow writing.
func (a *offlineAdmin) writeMode() (lockMode, error) {
	if a.mode == readOnly {
		return 0, fmt.Errorf("secauto %s opened data directory %s for reading only", a.command, a.dir)
	}
	return a.mode, nil
}

// with opens the data directory in mode, runs fn on it and closes it.
func (a *offlineAdmin) with(mode lockMode, fn func(store.Store) error) (err error) {
	s, err := a.openStore(mode)
	if err != nil {
		return err
	}
	if mode == readOnly {
		defer s.Close() // nothing was written, so nothing can fail
	} else {
		defer closeStore(s, &err)
	}
	return fn(s)
}

// openStore opens the data directory in the given mode; every offline
// operation opens it through here, so the lock decision is made in one
// place.
func (a *offlineAdmin) openStore(mode lockMode) (store.Store, error) {
	opts := store.Options{
		Dir:              a.dir,
		ReadOnly:         mode == readOnly,
		Salvage:          mode == salvage,
		SnapshotInterval: -1, // a short-lived command writes jobs.json when it closes
		// Silent: everything the store logs for the daemon reaches a
		// command as a result, an error or its OpenReport, and is printed
		// from there once.
		Logger: slog.New(slog.DiscardHandler),
		Now:    a.now,
	}
	// A job the daemon was allowed to store must stay writable here, and
	// what it encrypted must be encrypted here too: a configuration that
	// does not load stops the command rather than write in plain.
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	opts.MaxJobBytes = int(cfg.Jobs.MaxJobBytes)
	opts.Keyring = cfg.Jobs.Keyring
	opts.OnUnreadable = func(id string, err error) {
		fmt.Fprintf(a.errOut, "secauto: warning: job %s left out: %v\n", id, err)
	}
	if mode != readOnly {
		host, _ := os.Hostname()
		opts.Owner = store.Owner{
			PID:       os.Getpid(),
			Host:      host,
			Command:   "secauto " + a.command,
			StartedAt: a.now().UTC(),
		}
	}
	if cfg.Store.Driver == "postgres" {
		return openPostgres(cfg, opts)
	}
	s, err := store.Open(opts)
	var locked *store.LockedError
	if errors.As(err, &locked) {
		// Another command holds the directory (a daemon would have been
		// asked instead, see openAdmin), or a daemon started a moment
		// ago: exit status 2, naming the holder.
		return nil, locked
	}
	var corrupt *store.CorruptError
	var unusable *store.DirError
	if errors.As(err, &corrupt) || errors.As(err, &unusable) {
		return nil, err // it names the file or directory and what to do
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open data directory %s: %w", a.dir, err)
	}
	if r := s.Report(); r.UnreadableJobs > 0 {
		fmt.Fprintf(a.errOut, "secauto: warning: %s\n", store.MissingKeysMessage(r, opts.Keyring != nil))
	}
	if mode == readOnly && a.command != "recover" {
		// What is shown comes from a repaired view of the files; say so,
		// and how to make the repair real. recover reports these itself.
		for _, p := range s.Report().Problems {
			fmt.Fprintf(a.errOut, "secauto: warning: %s; run 'secauto recover' to repair it\n", p)
		}
	}
	return s, nil
}

// closeStore closes a store a command wrote to; closing writes a complete
// jobs.json, so its error is the command's error.
func closeStore(s store.Store, err *error) {
	if cerr := s.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("cannot finish writing the data directory: %w; run 'secauto verify' to check it", cerr)
	}
}

func (a *offlineAdmin) ListJobs(_ context.Context, f store.Filter) (jobs []*job.Job, err error) {
	err = a.with(readOnly, func(s store.Store) error {
		jobs, err = s.List(f)
		if err != nil {
			return fmt.Errorf("cannot list jobs: %w", err)
		}
		return nil
	})
	return jobs, err
}

func (a *offlineAdmin) GetJob(_ context.Context, id string) (j *job.Job, err error) {
	err = a.with(readOnly, func(s store.Store) error {
		j, err = s.Get(id)
		if err != nil {
			return fmt.Errorf("cannot read job %s: %w", id, err)
		}
		return nil
	})
	return j, err
}

func (a *offlineAdmin) Cleanup(_ context.Context, o store.CleanupOptions) (res *store.CleanupResult, err error) {
	mode := readOnly
	if !o.DryRun {
		if mode, err = a.writeMode(); err != nil {
			return nil, err
		}
	}
	err = a.with(mode, func(s store.Store) error {
		res, err = s.Cleanup(o)
		if err != nil {
			return fmt.Errorf("cleanup failed: %w", err)
		}
		return nil
	})
	return res, err
}

func (a *offlineAdmin) Backup(_ context.Context, compress *bool, progress store.Progress) (res *store.BackupResult, err error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	mode, err := a.writeMode()
	if err != nil {
		return nil, err
	}
	bo := store.BackupOptions{Compress: cfg.Jobs.BackupCompress, Keep: cfg.Jobs.BackupKeep, Progress: progress}
	if compress != nil {
		bo.Compress = *compress
	}
	err = a.with(mode, func(s store.Store) error {
		res, err = s.Backup(bo)
		if err != nil {
			return fmt.Errorf("cannot write backup: %w", err)
		}
		return nil
	})
	return res, err
}

func (a *offlineAdmin) ListBackups(context.Context) ([]store.BackupInfo, error) {
	list, err := store.ListBackups(a.dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list backups: %w", err)
	}
	return list, nil
}

func (a *offlineAdmin) Restore(_ context.Context, path string, progress store.Progress) (out *Restored, err error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	mode, err := a.writeMode()
	if err != nil {
		return nil, err
	}
	err = a.with(mode, func(s store.Store) error {
		out = &Restored{Repaired: s.Report()}
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

func (a *offlineAdmin) Verify(_ context.Context, progress store.Progress) (*store.VerifyResult, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	vo := store.VerifyOptions{Progress: progress, CheckRecords: webhook.Check, Keyring: cfg.Jobs.Keyring}
	if cfg.Store.Driver == "postgres" {
		// The database answers under its own transactions, beside the
		// nodes that write it.
		var res *store.VerifyResult
		err := a.with(readOnly, func(s store.Store) (err error) {
			res, err = s.Verify(vo)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("cannot verify the job store: %w", err)
		}
		return res, nil
	}
	res, err := store.VerifyWith(a.dir, vo)
	if err != nil {
		return nil, fmt.Errorf("cannot verify %s: %w", a.dir, err)
	}
	return res, nil
}

func (a *offlineAdmin) Recover(_ context.Context, dryRun bool) (out *Recovery, err error) {
	mode := readOnly
	if !dryRun {
		if mode, err = a.writeMode(); err != nil {
			return nil, err
		}
	}
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	// The job.recovered events wait in the outbox, written with the jobs
	// they announce, until the next serve delivers them.
	outbox := webhook.NewOutbox(webhookEndpoints(cfg), a.now)
	err = a.with(mode, func(s store.Store) error {
		out = &Recovery{Repaired: s.Report()}
		res, err := s.Recover(store.RecoverOptions{DryRun: dryRun, Also: outbox.JobRecords(webhook.JobRecovered)})
		if err != nil {
			return fmt.Errorf("recovery failed: %w", err)
		}
		out.RecoverResult = *res
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func webhookEndpoints(cfg *config.Config) []webhook.Endpoint {
	var eps []webhook.Endpoint
	for _, w := range cfg.Webhooks {
		eps = append(eps, webhook.Endpoint{URL: w.URL, Events: w.Events, Secret: w.Secret})
	}
	return eps
}

func (a *offlineAdmin) RotateKeys(_ context.Context, progress store.Progress) (res *store.RotateResult, err error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if cfg.Jobs.Keyring == nil {
		return nil, &configError{errors.New("no jobs.encryption_key_file is configured, so there is no key to encrypt with; set it in the configuration first")}
	}
	mode, err := a.writeMode()
	if err != nil {
		return nil, err
	}
	err = a.with(mode, func(s store.Store) error {
		res, err = s.RotateKeys(store.RotateOptions{Progress: progress})
		if err != nil {
			done := 0
			if res != nil {
				done = res.Jobs
			}
			return fmt.Errorf("key rotation stopped after %d jobs (they stay re-encrypted; run it again to go on): %w", done, err)
		}
		return nil
	})
	return res, err
}
