package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// exitStatus is the EXIT STATUS section of a command's long help; extra
// lines describe what exit status 1 means for that command.
func exitStatus(failure string) string {
	if failure == "" {
		failure = "the command failed"
	}
	return fmt.Sprintf(`
EXIT STATUS

    0  success
    1  %s
    2  bad usage or configuration, or the data directory is held by another
       secauto process`, failure)
}

// NewCmdRoot builds the whole command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "secauto",
		Short: "Run security automation playbooks and administer their job store",
		Long: strings.TrimSpace(`
secauto runs security automation playbooks as jobs and keeps every job in a
crash-safe store in the data directory.

"secauto serve" is the daemon: an HTTP API, a worker pool, crash recovery,
webhooks and background cleanup and backups. The other commands administer
the same data directory: on the files when no daemon runs, and through the
daemon's API when one holds the directory (found through secauto.lock), with
the same output either way. If that daemon cannot be reached they exit 2.

Configuration is read from --config, else $SECAUTO_CONFIG, else
./config.yaml when present, else built-in defaults.
` + exitStatus("")),
		Example: example(`
  secauto serve --port 8080 --workers 5
  secauto run triage.yaml --context ip=203.0.113.7 --wait
  secauto jobs list --status failed --since 24h
  secauto jobs show 0198a2
  secauto backup create
  secauto verify`),
		SilenceErrors: true,
		SilenceUsage:  true,
		// Args stays unset: cobra then reports unknown commands itself.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if f.NoColor {
				f.IOStreams.SetColorEnabled(false)
			}
			return nil
		},
	}
	root.Version = versionLine(resolveBuild(f.Build))
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err}
	})

	pf := root.PersistentFlags()
	pf.StringVar(&f.ConfigFile, "config", "", "configuration file (default $SECAUTO_CONFIG, else ./config.yaml)")
	pf.StringVar(&f.DataDir, "data-dir", "", "data directory (overrides data_directory in the config)")
	pf.BoolVar(&f.NoColor, "no-color", false, "never colour output (NO_COLOR does the same)")
	_ = root.MarkPersistentFlagFilename("config", "yaml", "yml")
	_ = root.MarkPersistentFlagDirname("data-dir")

	root.AddGroup(
		&cobra.Group{ID: "daemon", Title: "Daemon:"},
		&cobra.Group{ID: "admin", Title: "Data directory:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("daemon", NewCmdServe(f, nil), NewCmdRun(f, nil), NewCmdBench(f, nil))
	add("admin",
		NewCmdJobs(f),
		NewCmdStats(f, nil),
		NewCmdBackup(f),
		NewCmdCleanup(f, nil),
		NewCmdRecover(f, nil),
		NewCmdVerify(f, nil),
		NewCmdWebhooks(f),
		NewCmdKeys(f),
		NewCmdMigrate(f),
	)
	root.AddCommand(NewCmdCompletion(f), NewCmdVersion(f, nil))
	return root
}

// groupCommand returns a command that only holds subcommands; called with
// an unknown subcommand it fails instead of printing help and succeeding.
func groupCommand(use, short, long, example string) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

// exactArgs is cobra.ExactArgs with a usage error that says what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if len(args) < n {
				return usageErrorf("missing %s", what)
			}
			return usageErrorf("too many arguments: %s takes only %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unexpected argument %q: %s takes no arguments", args[0], cmd.CommandPath())
	}
	return nil
}

// example trims the blank lines around an Example block but keeps the
// indentation of its first line, which strings.TrimSpace would lose.
func example(s string) string { return strings.Trim(s, "\n") }
