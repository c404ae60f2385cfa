package postgres

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// snapshot reads every job as of one moment (a REPEATABLE READ
// transaction).
func (s *Store) snapshot() ([]store.StoredJob, error) {
	var out []store.StoredJob
	err := pgx.BeginTxFunc(s.ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(s.ctx, "SELECT id, doc, key_id, status, created_at, completed_at FROM secauto_jobs")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.StoredJob, error) {
			var sj store.StoredJob
			var status string
			err := r.Scan(&sj.ID, &sj.Doc, &sj.KeyID, &status, &sj.CreatedAt, &sj.CompletedAt)
			sj.Status = job.Status(status)
			return sj, err
		})
		return err
	})
	return out, err
}

// Backup writes a backup of every job, read as of one moment, into Dir in
// the jobs.json format (the file driver's writer: names, .sha256 sidecar,
// fsyncs, pruning beyond o.Keep).
func (s *Store) Backup(o store.BackupOptions) (_ *store.BackupResult, err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	return s.backup(o)
}

func (s *Store) backup(o store.BackupOptions) (*store.BackupResult, error) {
	if s.backups == nil {
		return nil, errors.New("no data directory is configured to write backups into; set data_directory")
	}
	jobs, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	res, err := s.backups.Write(jobs, o, s.o.Now())
	if err == nil {
		s.o.Logger.Debug("backup created", "file", res.Path, "jobs", res.Jobs, "bytes", res.Size, "removed", len(res.Removed))
	}
	return res, err
}

// Restore replaces every job with those of the backup at path: it
// verifies the file (its checksum when a .sha256 sidecar is beside it, and
// every job against the job schema), writes a safety backup of the current
// jobs, swaps them in one transaction, and only then removes the backups
// beyond o.Keep (as the file driver does). Running jobs of the backup
// have no node here, so the next RescueDead recovers them; running jobs of
// other nodes that the restore replaces are announced settled to them.
func (s *Store) Restore(path string, o store.BackupOptions) (_ *store.RestoreResult, err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	jobs, err := store.ReadBackupFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be restored: %w", path, err)
	}
	// Old backups are pruned only once the restore committed: a restore
	// that fails costs none of them.
	safety, err := s.backup(store.BackupOptions{Compress: o.Compress, Progress: o.Progress})
	if err != nil {
		return nil, fmt.Errorf("safety backup failed, nothing was restored: %w", err)
	}
	self := s.member.id()
	var own []string // this node's running jobs, replaced too
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		own = own[:0]
		// Writers wait until the restore is done, so none lands between
		// the delete and the copy.
		if _, err := tx.Exec(s.ctx, "LOCK TABLE secauto_jobs IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		rows, err := tx.Query(s.ctx, "DELETE FROM secauto_jobs RETURNING id, status, node")
		if err != nil {
			return err
		}
		var payloads []string
		for rows.Next() {
			var id, status string
			var node *string
			if err := rows.Scan(&id, &status, &node); err != nil {
				rows.Close()
				return err
			}
			if status == string(job.Running) {
				payloads = append(payloads, settledPayload(deref(node), id, self)...)
				if self != "" && deref(node) == self {
					own = append(own, id)
				}
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		n := len(jobs)
		_, err = tx.CopyFrom(s.ctx, pgx.Identifier{jobsTable},
			[]string{"id", "status", "created_at", "completed_at", "attempt", "key_id", "doc"},
			pgx.CopyFromSlice(n, func(i int) ([]any, error) {
				sj := jobs[i]
				var a struct {
					Attempts int `json:"attempts"`
				}
				json.Unmarshal(sj.Doc, &a)
				if o.Progress != nil && i%1024 == 0 {
					o.Progress(int64(i), int64(n))
				}
				return []any{sj.ID, string(sj.Status), sj.CreatedAt, sj.CompletedAt, a.Attempts, sj.KeyID, sj.Doc}, nil
			}))
		if err != nil {
			return err
		}
		if o.Progress != nil {
			o.Progress(int64(n), int64(n))
		}
		return notify(s.ctx, tx, append(payloads, "")...)
	})
	if err != nil {
		return nil, fmt.Errorf("nothing was restored: %w", err)
	}
	s.member.forget("")
	for _, id := range own {
		s.events.deliver(id, s.o.Logger)
	}
	res := &store.RestoreResult{RestoredJobs: len(jobs), SafetyBackup: safety.Path}
	if o.Keep > 0 {
		if _, err := s.backups.Prune(o.Keep); err != nil {
			s.o.Logger.Warn("removing old backups failed", "err", err.Error())
		}
	}
	s.o.Logger.Debug("store restored", "from", path, "jobs", res.RestoredJobs, "safety_backup", res.SafetyBackup)
	return res, nil
}
