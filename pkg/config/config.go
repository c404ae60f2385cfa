// Package config owns secauto's configuration: the schema of config.yaml
// (its key names are part of the product contract), the defaults that apply
// when a key or the whole file is absent, where the file is looked for, and
// strict loading that refuses unknown keys and bad values, naming the file,
// line and key of each mistake.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

// Defaults for every key that has one.
const (
	DefaultDataDirectory    = "data"
	DefaultRetentionDays    = 30
	DefaultCleanupInterval  = 24 * time.Hour
	DefaultBackupInterval   = 168 * time.Hour
	DefaultBackupKeep       = 10
	DefaultSnapshotInterval = 30 * time.Second
	DefaultAddress          = "127.0.0.1"
	DefaultPort             = 8080
	DefaultWorkers          = 5
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxJobBytes      = 16 << 20
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultLogLevel         = "info"
	DefaultLogFile          = "logs/secauto.log"
	DefaultStoreDriver      = "file"
	DefaultNodeLease        = 15 * time.Second
)

// EnvConfig names the environment variable consulted for the configuration
// file when --config is not given.
const EnvConfig = "SECAUTO_CONFIG"

// DefaultFile is the file used when neither --config nor $SECAUTO_CONFIG
// names one and it exists in the working directory.
const DefaultFile = "config.yaml"

// Events lists the webhook event names a webhook may subscribe to.
var Events = []string{
	"job.recovered", "job.completed", "job.failed", "job.cancelled",
	"backup.created", "backup.failed", "cleanup.completed", "store.restored",
}

// Config is the whole of config.yaml.
type Config struct {
	// DataDirectory holds jobs.json, the journal, backups and the lock;
	// a relative path is relative to the working directory.
	DataDirectory string    `yaml:"data_directory"`
	Jobs          Jobs      `yaml:"jobs"`
	Server        Server    `yaml:"server"`
	Webhooks      []Webhook `yaml:"webhooks"`
	Logging       Logging   `yaml:"logging"`
	Playbook      Playbook  `yaml:"playbook"`
	Store         Store     `yaml:"store"`

	// File is the file this configuration was read from; empty when only
	// the defaults apply.
	File string `yaml:"-"`
	// lines maps key paths to their lines in File, for the mistakes found
	// after parsing (ServerTLS).
	lines map[string]int
}

// Jobs configures retention, background maintenance and snapshots.
type Jobs struct {
	// RetentionDays is how many days terminal jobs are kept after they
	// completed.
	RetentionDays int `yaml:"retention_days"`
	// RetentionByStatus overrides RetentionDays for single terminal
	// statuses, e.g. keeping failed jobs longer for investigations.
	RetentionByStatus map[job.Status]int `yaml:"retention_by_status"`
	// CleanupInterval is the time between background cleanups; zero turns
	// them off (for operators who run "secauto cleanup" from cron).
	CleanupInterval Interval `yaml:"cleanup_interval"`
	BackupEnabled   bool     `yaml:"backup_enabled"`
	BackupInterval  Interval `yaml:"backup_interval"`
	// BackupKeep is how many of the newest backups are kept; zero keeps all.
	BackupKeep     int  `yaml:"backup_keep"`
	BackupCompress bool `yaml:"backup_compress"`
	// SnapshotInterval bounds how far jobs.json may lag the journal.
	SnapshotInterval Interval `yaml:"snapshot_interval"`
	// MaxJobBytes bounds one encoded job: a submission or a change that
	// would make a job larger is refused when it is made, so that nothing
	// acknowledged is too large to read back.
	MaxJobBytes ByteSize `yaml:"max_job_bytes"`
	// EncryptionKeyFile names a file of 256-bit keys, one a line (see
	// package seal): the first encrypts the secret-bearing fields of every
	// job written, all of them decrypt. It must be the user's own and
	// readable by its owner only (mode 0600).
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// Keyring holds the keys of EncryptionKeyFile once Parse has read it;
	// nil without one.
	Keyring *seal.Keyring `yaml:"-"`
}

// Server configures the daemon's HTTP API and worker pool.
type Server struct {
	Address string `yaml:"address"`
	// Port 0 lets the system pick a free port, which tests use.
	Port    int `yaml:"port"`
	Workers int `yaml:"workers"`
	// AuthTokens, when set, are the bearer tokens the API accepts. Once
	// loaded it also holds the tokens of AuthTokensFile and of
	// $SECAUTO_AUTH_TOKENS (ApplyEnv), so every consumer sees them all.
	AuthTokens []string `yaml:"auth_tokens"`
	// AuthTokensFile names a file of tokens, one a line, so that tokens
	// need not sit in config.yaml; it must be readable by its owner only.
	AuthTokensFile  string   `yaml:"auth_tokens_file"`
	MaxBodyBytes    ByteSize `yaml:"max_body_bytes"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// TLSCert and TLSKey, both or neither, are PEM files: the API then
	// speaks HTTPS only. TLSCert may hold the chain after the certificate.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// Playbook configures what playbooks may do.
type Playbook struct {
	HTTP PlaybookHTTP `yaml:"http"`
}

// PlaybookHTTP limits what http steps may reach.
type PlaybookHTTP struct {
	// AllowedHosts, when not empty, are the only hosts http steps may
	// reach: names, wildcards (*.example.com), addresses or CIDRs, each
	// with an optional port.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// DeniedNetworks are CIDRs or addresses http steps may not reach, on
	// top of the link-local and metadata addresses denied by default.
	DeniedNetworks []string `yaml:"denied_networks"`
}

// Store chooses where jobs are kept.
type Store struct {
	// Driver is "file" (the data directory) or "postgres".
	Driver string `yaml:"driver"`
	// PostgresURL is the database of the postgres driver; its password is
	// never printed.
	PostgresURL string `yaml:"postgres_url"`
	// NodeLease is how long a node may go without renewing its lease on
	// its running jobs before another node recovers them.
	NodeLease Duration `yaml:"node_lease"`
}

// Webhook is one receiver of events.
type Webhook struct {
	URL string `yaml:"url"`
	// Events limits the deliveries to these event names; empty means all.
	Events []string `yaml:"events"`
	// Secret, when set, signs every delivery.
	Secret string `yaml:"secret"`
}

// Logging configures the daemon's log.
type Logging struct {
	Level string `yaml:"level"`
	// Format is "json" or "text"; empty picks text on a terminal and JSON
	// otherwise.
	Format string `yaml:"format"`
	File   string `yaml:"file"`
}

// Default returns the configuration that applies when there is no file.
func Default() *Config {
	return &Config{
		DataDirectory: DefaultDataDirectory,
		Jobs: Jobs{
			RetentionDays:    DefaultRetentionDays,
			CleanupInterval:  Interval(DefaultCleanupInterval),
			BackupEnabled:    true,
			BackupInterval:   Interval(DefaultBackupInterval),
			BackupKeep:       DefaultBackupKeep,
			SnapshotInterval: Interval(DefaultSnapshotInterval),
			MaxJobBytes:      DefaultMaxJobBytes,
		},
		Server: Server{
			Address:         DefaultAddress,
			Port:            DefaultPort,
			Workers:         DefaultWorkers,
			MaxBodyBytes:    DefaultMaxBodyBytes,
			ShutdownTimeout: Duration(DefaultShutdownTimeout),
		},
		Logging: Logging{
			Level: DefaultLogLevel,
			File:  DefaultLogFile,
		},
		Store: Store{
			Driver:    DefaultStoreDriver,
			NodeLease: Duration(DefaultNodeLease),
		},
	}
}

// Retention returns how long terminal jobs of status st are kept.
func (j Jobs) Retention(st job.Status) time.Duration {
	if d, ok := j.RetentionByStatus[st]; ok {
		return days(d)
	}
	return days(j.RetentionDays)
}

// RetentionOverrides returns RetentionByStatus as durations, the form the
// store's cleanup takes.
func (j Jobs) RetentionOverrides() map[job.Status]time.Duration {
	if len(j.RetentionByStatus) == 0 {
		return nil
	}
	m := make(map[job.Status]time.Duration, len(j.RetentionByStatus))
	for st, d := range j.RetentionByStatus {
		m[st] = days(d)
	}
	return m
}

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// Locate says which configuration file applies: flagValue (from --config)
// if set, else $SECAUTO_CONFIG, else ./config.yaml when it exists. An
// empty path means no file: the defaults apply.
func Locate(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if getenv != nil {
		if p := getenv(EnvConfig); p != "" {
			return p, nil
		}
	}
	switch _, err := os.Stat(DefaultFile); {
	case err == nil:
		return DefaultFile, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	default:
		return "", fmt.Errorf("cannot read %s: %w; fix its permissions or name another file with --config", DefaultFile, err)
	}
}

// Load reads and validates the configuration file at path; keys the file
// leaves out keep their defaults. An empty path returns the defaults.
// Mistakes in the file come back as Errors.
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist; check --config and %s, or create it from the example config.yaml", path, EnvConfig)
		}
		return nil, fmt.Errorf("cannot read config file: %w; fix its permissions or name another file with --config", err)
	}
	return Parse(path, data)
}
