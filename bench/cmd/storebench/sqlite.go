package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"github.com/secauto/secauto/pkg/job"
	_ "modernc.org/sqlite"
)

// sqlitePeer keeps jobs in one SQLite table, id to the job's JSON, in WAL
// mode with synchronous=FULL: every commit fsyncs the WAL before it
// returns.
type sqlitePeer struct {
	group bool // collect concurrent changes into one transaction
	db    *sql.DB
	b     *batcher[sqlChange]
}

type sqlChange struct {
	create bool
	id     string
	status job.Status
	body   []byte
}

const sqliteSchema = `CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, body BLOB NOT NULL) WITHOUT ROWID`

func sqliteDSN(path, synchronous string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + synchronous + ")&_pragma=busy_timeout(10000)"
}

func (p *sqlitePeer) open(dir string, n int) error {
	path := filepath.Join(dir, "sqlite.db")
	if err := sqlitePrefill(path, n); err != nil {
		return fmt.Errorf("pre-fill: %w", err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(path, "FULL"))
	if err != nil {
		return err
	}
	// One connection: SQLite has one writer at a time, and writers take
	// turns here instead of spinning on SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	var mode string
	var sync int
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		db.Close()
		return err
	}
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil {
		db.Close()
		return err
	}
	if mode != "wal" || sync != 2 {
		db.Close()
		return fmt.Errorf("sqlite opened with journal_mode=%s synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
	p.db = db
	if p.group {
		p.b = newBatcher(p.commit)
	}
	return nil
}

// sqlitePrefill bulk-loads n completed jobs with synchronous=OFF in large
// transactions, then checkpoints, so the measured store starts with them
// in the database file.
func sqlitePrefill(path string, n int) error {
	db, err := sql.Open("sqlite", sqliteDSN(path, "OFF"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(sqliteSchema); err != nil {
		return err
	}
	base := time.Now().Add(-48 * time.Hour).UTC()
	for start := 0; start < n; start += 50_000 {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		st, err := tx.Prepare(`INSERT INTO jobs (id, status, body) VALUES (?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return err
		}
		for i := start; i < min(n, start+50_000); i++ {
			j := prefillJob(i, base)
			if _, err := st.Exec(j.ID, string(j.Status), encode(j)); err != nil {
				tx.Rollback()
				return err
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}

func apply(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, c sqlChange) error {
	if c.create {
		_, err := ex.ExecContext(ctx, `INSERT INTO jobs (id, status, body) VALUES (?, ?, ?)`, c.id, string(c.status), c.body)
		return err
	}
	res, err := ex.ExecContext(ctx, `UPDATE jobs SET status = ?, body = ? WHERE id = ?`, string(c.status), c.body, c.id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("job %s not found", c.id)
	}
	return nil
}

// commit is the group commit's flush: every waiting change in one
// transaction.
func (p *sqlitePeer) commit(cs []sqlChange) error {
	ctx := context.Background()
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := apply(ctx, tx, c); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func (p *sqlitePeer) job(i int, lat *[]time.Duration) error {
	return lifecycle(newIDJob(i), func(j *job.Job, create bool) error {
		c := sqlChange{create: create, id: j.ID, status: j.Status, body: encode(j)}
		if p.group {
			return p.b.do(c)
		}
		return apply(context.Background(), p.db, c) // autocommit: one transaction
	}, lat)
}

func (p *sqlitePeer) close() error {
	if p.b != nil {
		p.b.close()
	}
	if p.db == nil {
		return nil
	}
	return p.db.Close()
}
