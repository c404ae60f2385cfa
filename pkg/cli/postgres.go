package cli

import (
	"context"
	"fmt"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/store/postgres"
)

// openPostgres opens the postgres driver with the settings a command or the
// daemon gave the file driver: the data directory is then where backups
// are written, and the database is what several processes share (SPEC
// §11), so no lock is taken and no daemon is asked.
func openPostgres(cfg *config.Config, so store.Options) (store.Store, error) {
	st, err := postgres.Open(context.Background(), postgres.Options{
		URL:          cfg.Store.PostgresURL,
		Dir:          so.Dir,
		ReadOnly:     so.ReadOnly,
		MaxJobBytes:  so.MaxJobBytes,
		Keyring:      so.Keyring,
		Logger:       so.Logger,
		Now:          so.Now,
		OnUnreadable: so.OnUnreadable,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open the job store at %s: %w", postgres.Redact(cfg.Store.PostgresURL), err)
	}
	return st, nil
}
