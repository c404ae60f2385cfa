package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The schema is a list of versioned SQL files, applied in order, each in
// its own transaction together with its row in secauto_schema_migrations,
// while the applier holds an advisory lock named after the schema: two
// nodes starting together never both apply one, and applying again is a
// no-op. The tables live in the connection's search_path (its first
// schema), so one database can hold several stores.

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

var migrations = loadMigrations()

func loadMigrations() []migration {
	ents, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	var out []migration
	for _, e := range ents {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("migration file " + e.Name() + " is not named NNNN_name.sql")
		}
		sql, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: name, sql: string(sql)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			panic(fmt.Sprintf("migration %d is missing", i+1))
		}
	}
	return out
}

// latest is the schema version this code needs.
func latest() int { return len(migrations) }

// MigrationStatus is what `secauto migrate status` reports.
type MigrationStatus struct {
	Version int `json:"version"`
	Pending int `json:"pending"`
	Latest  int `json:"latest"`
}

// Migrate applies the pending migrations of the database url names, under
// an advisory lock, and returns the status after. Running it again is a
// no-op.
func Migrate(ctx context.Context, url string) (st MigrationStatus, err error) {
	defer scrubErr(url, &err)
	conn, err := connect(ctx, url)
	if err != nil {
		return MigrationStatus{}, err
	}
	defer conn.Close(context.Background())
	return migrate(ctx, conn)
}

// Status reports the schema version of the database url names, without
// changing anything.
func Status(ctx context.Context, url string) (st MigrationStatus, err error) {
	defer scrubErr(url, &err)
	conn, err := connect(ctx, url)
	if err != nil {
		return MigrationStatus{}, err
	}
	defer conn.Close(context.Background())
	return status(ctx, conn)
}

func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := parseConfig(url)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return nil, connectError(url, err)
	}
	return conn, nil
}

// schemaOf is the schema the connection creates tables in: the first of
// its search_path that exists.
func schemaOf(ctx context.Context, conn *pgx.Conn) (string, error) {
	var schema *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return "", err
	}
	if schema == nil {
		return "", errors.New("no schema of the connection's search_path exists; create it, or name an existing one with ?search_path= in store.postgres_url")
	}
	return *schema, nil
}

func migrate(ctx context.Context, conn *pgx.Conn) (MigrationStatus, error) {
	schema, err := schemaOf(ctx, conn)
	if err != nil {
		return MigrationStatus{}, err
	}
	lock := "secauto_migrate:" + schema
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", lock); err != nil {
		return MigrationStatus{}, fmt.Errorf("take the migration lock: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", lock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS secauto_schema_migrations (
		version int PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return MigrationStatus{}, fmt.Errorf("create secauto_schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return MigrationStatus{}, err
	}
	for _, m := range migrations {
		if done[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO secauto_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return MigrationStatus{}, fmt.Errorf("apply migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	return status(ctx, conn)
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM secauto_schema_migrations")
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, err
	}
	done := map[int]bool{}
	for _, v := range vs {
		done[v] = true
	}
	return done, nil
}

func status(ctx context.Context, conn *pgx.Conn) (MigrationStatus, error) {
	st := MigrationStatus{Latest: latest()}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('secauto_schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return st, err
	}
	done := map[int]bool{}
	if exists {
		var err error
		if done, err = appliedVersions(ctx, conn); err != nil {
			return st, err
		}
	}
	for v := range done {
		st.Version = max(st.Version, v)
	}
	for _, m := range migrations {
		if !done[m.version] {
			st.Pending++
		}
	}
	return st, nil
}

// checkSchema refuses a schema this code cannot use.
func checkSchema(st MigrationStatus) error {
	switch {
	case st.Version > st.Latest:
		return fmt.Errorf("the database schema is version %d, newer than this secauto knows (%d); upgrade secauto", st.Version, st.Latest)
	case st.Pending > 0:
		return fmt.Errorf("the database schema is version %d and this secauto needs %d; run `secauto migrate up` first", st.Version, st.Latest)
	}
	return nil
}
