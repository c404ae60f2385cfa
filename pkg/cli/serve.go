package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/console"
	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

// ServeOptions holds "serve"'s flags and dependencies.
type ServeOptions struct {
	IO     *IOStreams
	Config func() (*config.Config, error)
	// StoreDir returns the data directory (--data-dir or the config).
	StoreDir func() (string, error)
	// Run is the daemon; server.Run outside tests.
	Run func(context.Context, server.Options) error

	Port     *int
	Workers  *int
	Address  *string
	Insecure bool
}

// NewCmdServe is "secauto serve".
func NewCmdServe(f *Factory, runF func(*ServeOptions) error) *cobra.Command {
	opts := &ServeOptions{IO: f.IOStreams, Config: f.Config, StoreDir: f.StoreDir, Run: server.Run}
	var port, workers int
	var address string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: HTTP API, workers, recovery and maintenance",
		Long: strings.TrimSpace(`
Run the secauto daemon: the HTTP API that accepts playbooks, the worker pool
that runs them as jobs, crash recovery at start, webhooks and background
cleanup and backups.

The daemon holds the data directory's lock for its lifetime; a second
serve on the same directory exits with status 2 and names the first one.
SIGINT or SIGTERM stop it gracefully: no new requests are accepted, running
jobs get server.shutdown_timeout to finish, a complete jobs.json is
written and the lock is released.

Flags override server.port, server.workers and server.address from the
config. A non-loopback address needs server.auth_tokens (or
server.auth_tokens_file, or $SECAUTO_AUTH_TOKENS), or --insecure. With
server.tls_cert and server.tls_key the API speaks HTTPS only.
The first releases' form "secauto -port 8080 -workers 5" still works.
` + exitStatus("the daemon failed to start or stopped with an error")),
		Example: example(`
  secauto serve
  secauto serve --port 9090 --workers 10
  secauto serve --config /etc/secauto/config.yaml --data-dir /var/lib/secauto`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("port") {
				opts.Port = &port
			}
			if cmd.Flags().Changed("workers") {
				opts.Workers = &workers
			}
			if cmd.Flags().Changed("address") {
				opts.Address = &address
			}
			if runF != nil {
				return runF(opts)
			}
			return serveRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&port, "port", "p", config.DefaultPort, "TCP port of the API, 0 for any free port (default: server.port)")
	fl.IntVarP(&workers, "workers", "w", config.DefaultWorkers, "jobs run at the same time (default: server.workers)")
	fl.StringVar(&address, "address", config.DefaultAddress, "address to listen on (default: server.address)")
	fl.BoolVar(&opts.Insecure, "insecure", false, "allow a non-loopback address without auth tokens")
	return cmd
}

// serveOptions turns the configuration and flags into the daemon's options.
func serveOptions(opts *ServeOptions, cfg *config.Config, dir string) (server.Options, error) {
	so := server.Options{
		Store: store.Options{
			Dir:              dir,
			SnapshotInterval: cfg.Jobs.SnapshotInterval.Duration(),
			MaxJobBytes:      int(cfg.Jobs.MaxJobBytes),
			Keyring:          cfg.Jobs.Keyring,
			// Serving starts before every settled job's bytes are
			// checked; the store checks them right after.
			CheckInBackground: true,
		},
		Address:         cfg.Server.Address,
		Port:            cfg.Server.Port,
		Workers:         cfg.Server.Workers,
		AuthTokens:      cfg.Server.AuthTokens,
		Insecure:        opts.Insecure,
		MaxBodyBytes:    int64(cfg.Server.MaxBodyBytes),
		ShutdownTimeout: cfg.Server.ShutdownTimeout.Duration(),
		Maintenance: server.Maintenance{
			Retention:         cfg.Jobs.Retention(""),
			RetentionByStatus: cfg.Jobs.RetentionOverrides(),
			CleanupInterval:   cfg.Jobs.CleanupInterval.Duration(),
			BackupEnabled:     cfg.Jobs.BackupEnabled,
			BackupInterval:    cfg.Jobs.BackupInterval.Duration(),
			BackupKeep:        cfg.Jobs.BackupKeep,
			BackupCompress:    cfg.Jobs.BackupCompress,
		},
	}
	so.Webhooks = webhookEndpoints(cfg)
	if opts.Port != nil {
		if *opts.Port < 0 || *opts.Port > 65535 {
			return so, usageErrorf("invalid --port %d: use 1-65535, or 0 for any free port", *opts.Port)
		}
		so.Port = *opts.Port
	}
	if opts.Workers != nil {
		if *opts.Workers < 1 {
			return so, usageErrorf("invalid --workers %d: run at least 1 worker", *opts.Workers)
		}
		so.Workers = *opts.Workers
	}
	if opts.Address != nil {
		if strings.TrimSpace(*opts.Address) == "" {
			return so, usageErrorf("invalid --address: give an IP such as 127.0.0.1 or a host name")
		}
		so.Address = *opts.Address
	}
	if err := so.CheckExposure(); err != nil {
		return so, &configError{err}
	}
	if cfg.Store.Driver == "postgres" {
		so.OpenStore = func(o store.Options) (store.Store, error) { return openPostgres(cfg, o) }
	}
	so.NodeLease = cfg.Store.NodeLease.Duration()
	// The certificate and key are read now, so a mistake in them stops
	// the start with exit 2 instead of failing every connection.
	tc, err := cfg.ServerTLS()
	if err != nil {
		return so, &configError{err}
	}
	so.TLS = tc
	so.Console = console.Mount(console.Options{Secure: tc != nil})
	pc, err := httpPolicy(cfg)
	if err != nil {
		return so, &configError{err}
	}
	so.HTTPPolicy = pc
	return so, nil
}

// httpPolicy is playbook.http as the playbook package reads it, checked
// now so that an entry it refuses stops the start naming its key and line.
func httpPolicy(cfg *config.Config) (*playbook.HTTPPolicyConfig, error) {
	h := cfg.Playbook.HTTP
	pc := &playbook.HTTPPolicyConfig{AllowedHosts: h.AllowedHosts, DeniedNetworks: h.DeniedNetworks}
	_, err := playbook.NewHTTPPolicy(*pc)
	var pe *playbook.PolicyConfigError
	switch {
	case errors.As(err, &pe):
		return nil, cfg.KeyError(fmt.Sprintf("%s[%d]", pe.Setting, pe.Index), fmt.Sprintf("%q %v", pe.Entry, pe.Err))
	case err != nil:
		return nil, err
	}
	return pc, nil
}

func serveRun(ctx context.Context, opts *ServeOptions) error {
	cfg, err := opts.Config()
	if err != nil {
		return err
	}
	dir, err := opts.StoreDir()
	if err != nil {
		return err
	}
	so, err := serveOptions(opts, cfg, dir)
	if err != nil {
		return err
	}
	// stderr and logging.file (logging.go); closed once the daemon stopped.
	logger, logFile, err := daemonLogger(opts.IO.ErrOut, opts.IO.IsStderrTTY(), cfg.Logging)
	if err != nil {
		return err
	}
	defer logFile.Close()
	so.Logger = logger
	so.Store.Logger = so.Logger

	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return opts.Run(ctx, so)
}

// newLogger builds the daemon's stderr logger: text for a person at a
// terminal, JSON for log collectors, unless logging.format says otherwise.
// daemonLogger adds logging.file to it.
func newLogger(w io.Writer, tty bool, lc config.Logging) *slog.Logger {
	ho := &slog.HandlerOptions{Level: logLevel(lc.Level)}
	format := lc.Format
	if format == "" {
		format = "json"
		if tty {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, ho))
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}
