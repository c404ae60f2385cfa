package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
)

// Factory carries what commands depend on, and nothing of their work:
// streams, environment, clock, build information and the global flags, and
// the configuration and the data directory's Admin, both opened on demand
// so that commands which need neither (help, completion, version) work
// even with a broken config file.
type Factory struct {
	IOStreams *IOStreams
	Getenv    func(string) string
	Now       func() time.Time
	Build     BuildInfo
	// OpenAdmin opens the Admin a command does its work through, with the
	// lock mode the command needs; command names it ("backup create") as
	// the lock's owner. Tests replace it to run commands on a fake.
	OpenAdmin func(command string, mode lockMode) (Admin, error)

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
	f := &Factory{
		IOStreams: ios,
		Getenv:    getenv,
		Now:       time.Now,
		Build:     BuildInfo{Version: version, Commit: commit, Date: date},
	}
	f.OpenAdmin = f.openAdmin
	return f
}

// Config loads the configuration once: --config, else $SECAUTO_CONFIG,
// else ./config.yaml, else the defaults; then what the environment adds
// ($SECAUTO_AUTH_TOKENS, $SECAUTO_POSTGRES_URL).
func (f *Factory) Config() (*config.Config, error) {
	if !f.loaded {
		f.loaded = true
		path, err := config.Locate(f.ConfigFile, f.Getenv)
		if err == nil {
			f.cfg, err = config.Load(path)
		}
		if err == nil {
			err = f.cfg.ApplyEnv(f.Getenv)
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
