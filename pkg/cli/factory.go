package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// Factory carries what commands depend on: streams, environment, clock,
// build information and the global flags, and opens the configuration and
// the data directory on demand so that commands which need neither (help,
// completion, version) work even with a broken config file.
type Factory struct {
	IOStreams *IOStreams
	Getenv    func(string) string
	Now       func() time.Time
	Build     BuildInfo

	// ConfigFile and DataDir hold --config and --data-dir.
	ConfigFile string
	DataDir    string
	// NoColor holds --no-color.
	NoColor bool

	cfg    *config.Config
	cfgErr error
	loaded bool
}

// NewFactory returns a factory on the given streams and environment.
func NewFactory(ios *IOStreams, getenv func(string) string) *Factory {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &Factory{
		IOStreams: ios,
		Getenv:    getenv,
		Now:       time.Now,
		Build:     BuildInfo{Version: version, Commit: commit, Date: date},
	}
}

// Config loads the configuration once: --config, else $SECAUTO_CONFIG,
// else ./config.yaml, else the defaults.
func (f *Factory) Config() (*config.Config, error) {
	if !f.loaded {
		f.loaded = true
		path, err := config.Locate(f.ConfigFile, f.Getenv)
		if err == nil {
			f.cfg, err = config.Load(path)
		}
		if err != nil {
			f.cfgErr = &configError{err}
		}
	}
	return f.cfg, f.cfgErr
}

// StoreDir returns the data directory: --data-dir, else data_directory.
func (f *Factory) StoreDir() (string, error) {
	if f.DataDir != "" {
		return f.DataDir, nil
	}
	cfg, err := f.Config()
	if err != nil {
		return "", err
	}
	return cfg.DataDirectory, nil
}

// existingStoreDir is StoreDir for commands that administer data that must
// already be there: a mistyped path is reported rather than created empty.
func (f *Factory) existingStoreDir() (string, error) {
	dir, err := f.StoreDir()
	if err != nil {
		return "", err
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("data directory %s does not exist; check --data-dir or data_directory in the config", dir)
	case err != nil:
		return "", fmt.Errorf("cannot read data directory: %w; check its permissions", err)
	case !st.IsDir():
		return "", fmt.Errorf("data directory %s is not a directory; check --data-dir or data_directory in the config", dir)
	}
	return dir, nil
}

// storeLogger is the store's logger in commands: silent, because
// everything the store logs for the daemon reaches a command as a result,
// an error or its OpenReport, and is printed from there once.
func (f *Factory) storeLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
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
)

// openStore opens the data directory in the given mode. Every command
// opens the store through here, so the lock decision is made in one place.
func (f *Factory) openStore(mode lockMode, command string) (*store.Store, error) {
	dir, err := f.existingStoreDir()
	if err != nil {
		return nil, err
	}
	opts := store.Options{
		Dir:              dir,
		ReadOnly:         mode == readOnly,
		Salvage:          mode == salvage,
		SnapshotInterval: -1, // a short-lived command writes jobs.json when it closes
		Logger:           f.storeLogger(),
		Now:              f.Now,
	}
	if mode != readOnly {
		host, _ := os.Hostname()
		opts.Owner = store.Owner{
			PID:       os.Getpid(),
			Host:      host,
			Command:   "secauto " + command,
			StartedAt: f.Now().UTC(),
		}
	}
	s, err := store.Open(opts)
	var locked *store.LockedError
	if errors.As(err, &locked) {
		// Another command holds the directory (a daemon is asked instead,
		// see daemon), or a daemon started a moment ago: exit status 2,
		// naming the holder.
		return nil, locked
	}
	var corrupt *store.CorruptError
	if errors.As(err, &corrupt) {
		return nil, err // it names the file and what to do
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open data directory %s: %w", dir, err)
	}
	if mode == readOnly && command != "recover" {
		// What is shown comes from a repaired view of the files; say so,
		// and how to make the repair real. recover reports these itself.
		for _, p := range s.Report().Problems {
			fmt.Fprintf(f.IOStreams.ErrOut, "secauto: warning: %s; run 'secauto recover' to repair it\n", p)
		}
	}
	return s, nil
}

// daemon returns a client for the "secauto serve" that holds the data
// directory, which every command then asks to do its work (SPEC §6); nil
// when no daemon holds it, and the command works on the files itself. A
// directory held by a daemon that cannot be asked is an error with exit
// status 2. A directory held by another command (no daemon) is left to
// openStore: reading works beside it, writing stops with a
// *store.LockedError.
func (f *Factory) daemon() (*daemonClient, error) {
	dir, err := f.existingStoreDir()
	if err != nil {
		return nil, err
	}
	held, owner, err := store.Locked(dir)
	if err != nil || !held {
		return nil, nil // unreadable lock file: openStore reports what is wrong
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
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	token := ""
	if len(cfg.Server.AuthTokens) > 0 {
		token = cfg.Server.AuthTokens[0]
	}
	return newDaemonClient(dir, owner, token, f.Build.Version), nil
}

// withStore opens the data directory in mode, runs fn on it and closes it,
// showing a spinner on a terminal if that takes long (opening a large store
// and writing its jobs.json at close are the slow parts).
func (f *Factory) withStore(mode lockMode, command, what string, fn func(*store.Store, store.Progress) error) error {
	return busy(f.IOStreams, what, func(progress store.Progress) (err error) {
		s, err := f.openStore(mode, command)
		if err != nil {
			return err
		}
		if mode == readOnly {
			defer s.Close() // nothing was written, so nothing can fail
		} else {
			defer closeStore(s, &err)
		}
		return fn(s, progress)
	})
}

// closeStore closes a store a command wrote to; closing writes a complete
// jobs.json, so its error is the command's error.
func closeStore(s *store.Store, err *error) {
	if cerr := s.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("cannot finish writing the data directory: %w; run 'secauto verify' to check it", cerr)
	}
}

// relPath shortens a path inside the working directory for display.
func relPath(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// outbox queues webhook events for the configured endpoints; commands that
// change jobs offline leave their events in it for the daemon to deliver.
func (f *Factory) outbox() (*webhook.Outbox, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	return webhook.NewOutbox(webhookEndpoints(cfg), f.Now), nil
}

func webhookEndpoints(cfg *config.Config) []webhook.Endpoint {
	var eps []webhook.Endpoint
	for _, w := range cfg.Webhooks {
		eps = append(eps, webhook.Endpoint{URL: w.URL, Events: w.Events, Secret: w.Secret})
	}
	return eps
}
