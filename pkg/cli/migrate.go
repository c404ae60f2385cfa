package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/store/postgres"
)

// NewCmdMigrate is "secauto migrate": the PostgreSQL schema.
func NewCmdMigrate(f *Factory) *cobra.Command {
	cmd := groupCommand("migrate",
		"Show or apply the PostgreSQL schema migrations",
		strings.TrimSpace(`
With store.driver: postgres, the tables secauto keeps jobs in are created and
upgraded by numbered migrations. "secauto serve" applies the pending ones when
it starts, one node at a time (under an advisory lock), so most operators
never run these; "migrate up" is for those who apply schema changes by hand
before rolling out a new release, "migrate status" tells where a database is.
`+exitStatus("")),
		example(`
  secauto migrate status
  SECAUTO_POSTGRES_URL=postgres://secauto@db:5432/secauto secauto migrate up -o json`))
	cmd.AddCommand(NewCmdMigrateStatus(f, nil), NewCmdMigrateUp(f, nil))
	return cmd
}

// MigrateOptions holds the flags and dependencies of "migrate status" and
// "migrate up".
type MigrateOptions struct {
	IO     *IOStreams
	Config func() (*config.Config, error)
	// Apply applies the pending migrations ("up"); else they are counted.
	Apply bool

	Output outputFormat
}

// NewCmdMigrateStatus is "secauto migrate status".
func NewCmdMigrateStatus(f *Factory, runF func(*MigrateOptions) error) *cobra.Command {
	opts := &MigrateOptions{IO: f.IOStreams, Config: f.Config}
	return newMigrateCmd(opts, runF, "status", "Show the schema version and how many migrations are pending", `
Print the schema version of the database store.postgres_url names, the newest
this release knows, and how many migrations "migrate up" would apply. Nothing
is changed.`)
}

// NewCmdMigrateUp is "secauto migrate up".
func NewCmdMigrateUp(f *Factory, runF func(*MigrateOptions) error) *cobra.Command {
	opts := &MigrateOptions{IO: f.IOStreams, Config: f.Config, Apply: true}
	return newMigrateCmd(opts, runF, "up", "Apply the pending schema migrations", `
Apply every pending migration, in order, each in its own transaction, under
an advisory lock so that a serve starting meanwhile waits. Running it again
changes nothing.`)
}

func newMigrateCmd(opts *MigrateOptions, runF func(*MigrateOptions) error, use, short, long string) *cobra.Command {
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    strings.TrimSpace(long) + "\n" + exitStatus("the database cannot be reached or a migration failed"),
		Example: example("  secauto migrate " + use + "\n  secauto migrate " + use + " -o json"),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return migrateRun(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func migrateRun(ctx context.Context, opts *MigrateOptions) error {
	cfg, err := opts.Config()
	if err != nil {
		return err
	}
	if cfg.Store.Driver != "postgres" {
		return &configError{fmt.Errorf("store.driver is %s: migrations are for the postgres driver; set store.driver: postgres and store.postgres_url first", cfg.Store.Driver)}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	url := cfg.Store.PostgresURL
	var st postgres.MigrationStatus
	if opts.Apply {
		st, err = postgres.Migrate(ctx, url)
	} else {
		st, err = postgres.Status(ctx, url)
	}
	if err != nil {
		verb := "read"
		if opts.Apply {
			verb = "migrate"
		}
		return fmt.Errorf("cannot %s the schema of %s: %w", verb, postgres.Redact(url), err)
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, st)
	}
	t := newTable(opts.IO, "database", "version", "latest", "pending")
	t.addRow(postgres.Redact(url), fmt.Sprint(st.Version), fmt.Sprint(st.Latest), fmt.Sprint(st.Pending))
	return t.render()
}
