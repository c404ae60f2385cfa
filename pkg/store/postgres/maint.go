package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// Names the problems of Verify are reported under.
const (
	jobsTable    = "secauto_jobs"
	recordsTable = "secauto_records"
)

// cleanupBatch is how many jobs one cleanup transaction deletes.
const cleanupBatch = 1000

// Recover applies SPEC §5 step 3 to the running jobs of dead nodes (their
// lease lapsed) and to those whose node has no row, as RescueDead does: a
// starting node never fails the jobs that live nodes run. With DryRun it
// reports what it would do.
func (s *Store) Recover(o store.RecoverOptions) (_ *store.RecoverResult, err error) {
	defer scrubErr(s.o.URL, &err)
	now := o.Now
	if now.IsZero() {
		now = s.o.Now()
	}
	now = now.UTC()
	res := &store.RecoverResult{DryRun: o.DryRun, Actions: []store.RecoverAction{}}
	if err := s.readable(); err != nil {
		return nil, err
	}
	if o.DryRun {
		rows, err := s.pool.Query(s.ctx, `SELECT j.id, j.doc FROM secauto_jobs j WHERE j.status = 'running'
			AND NOT EXISTS (SELECT 1 FROM secauto_nodes n WHERE n.id = j.node AND (n.lease_until >= now() OR n.id = $1))
			ORDER BY j.created_at, j.id`, s.nodeID())
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var doc []byte
			if err := rows.Scan(&id, &doc); err != nil {
				rows.Close()
				return nil, err
			}
			j, err := s.codec.DecodeJob(id, doc)
			if err != nil {
				s.logUnreadable(id, err)
				continue
			}
			res.Actions = append(res.Actions, store.PlanRecovery(j, now))
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	} else {
		done, err := s.begin()
		if err != nil {
			return nil, err
		}
		res.Actions, res.Recovered, err = s.rescue(now, o.Also)
		done()
		if err != nil {
			return nil, err
		}
		if res.Actions == nil {
			res.Actions = []store.RecoverAction{}
		}
	}
	for _, a := range res.Actions {
		if a.To == job.Pending {
			res.Requeued++
		} else {
			res.FailedRunning++
		}
	}
	if err := s.pool.QueryRow(s.ctx, "SELECT count(*) FROM secauto_jobs WHERE status = 'pending'").Scan(&res.Pending); err != nil {
		return nil, err
	}
	if o.DryRun {
		res.Pending += res.Requeued
	}
	return res, nil
}

// Cleanup deletes terminal jobs that completed longer ago than their
// retention, in transactions of cleanupBatch jobs, so no lock is held
// long. Pending and running jobs are never touched. With DryRun it only
// reports what it would delete.
func (s *Store) Cleanup(o store.CleanupOptions) (_ *store.CleanupResult, err error) {
	defer scrubErr(s.o.URL, &err)
	now := o.Now
	if now.IsZero() {
		now = s.o.Now()
	}
	var statuses []string
	var cutoffs []any
	for _, st := range job.Statuses {
		if !st.Terminal() {
			continue
		}
		r, ok := o.ByStatus[st]
		if !ok {
			r = o.Retention
		}
		statuses = append(statuses, string(st))
		cutoffs = append(cutoffs, now.Add(-r))
	}
	const due = `SELECT j.id FROM secauto_jobs j JOIN unnest($1::text[], $2::timestamptz[]) AS c(status, cutoff)
		ON j.status = c.status WHERE coalesce(j.completed_at, j.created_at) < c.cutoff`
	res := &store.CleanupResult{DryRun: o.DryRun, IDs: []string{}}
	if o.DryRun {
		if err := s.readable(); err != nil {
			return nil, err
		}
		rows, err := s.pool.Query(s.ctx, due+" ORDER BY j.id", statuses, cutoffs)
		if err != nil {
			return nil, err
		}
		if res.IDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, err
		}
	} else {
		done, err := s.begin()
		if err != nil {
			return nil, err
		}
		defer done()
		for {
			rows, err := s.pool.Query(s.ctx, `DELETE FROM secauto_jobs WHERE id IN (`+due+` ORDER BY j.id LIMIT $3 FOR UPDATE OF j SKIP LOCKED)
				AND status IN ('completed', 'failed', 'cancelled') RETURNING id`, statuses, cutoffs, cleanupBatch)
			if err != nil {
				return nil, err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return nil, err
			}
			res.IDs = append(res.IDs, ids...)
			if len(ids) < cleanupBatch {
				break
			}
		}
		slices.Sort(res.IDs)
		s.o.Logger.Debug("cleanup completed", "deleted", len(res.IDs))
	}
	if res.IDs == nil {
		res.IDs = []string{}
	}
	res.Deleted = len(res.IDs)
	return res, nil
}

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
// jobs, then swaps them in one transaction. Running jobs of the backup
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
	safety, err := s.backup(store.BackupOptions{Compress: o.Compress, Keep: o.Keep, Progress: o.Progress})
	if err != nil {
		return nil, fmt.Errorf("safety backup failed, nothing was restored: %w", err)
	}
	self := s.nodeID()
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
	s.mu.Lock()
	clear(s.running)
	s.mu.Unlock()
	for _, id := range own {
		s.deliver(id)
	}
	res := &store.RestoreResult{RestoredJobs: len(jobs), SafetyBackup: safety.Path}
	s.o.Logger.Debug("store restored", "from", path, "jobs", res.RestoredJobs, "safety_backup", res.SafetyBackup)
	return res, nil
}

// Verify checks the database without changing it: the schema is the one
// this code needs, every job is stored under its own id, keeps the job
// invariants and the whole job schema, and its columns agree with it, the
// records open (and pass o.CheckRecords), and every backup in Dir verifies.
func (s *Store) Verify(o store.VerifyOptions) (_ *store.VerifyResult, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return nil, err
	}
	if o.Keyring == nil {
		o.Keyring = s.o.Keyring
	}
	res := &store.VerifyResult{Problems: []store.Problem{}}
	add := func(ps ...store.Problem) { res.Problems = append(res.Problems, ps...) }
	c, err := s.pool.Acquire(s.ctx)
	if err != nil {
		return nil, err
	}
	st, err := status(s.ctx, c.Conn())
	c.Release()
	if err != nil {
		return nil, err
	}
	if err := checkSchema(st); err != nil {
		add(store.Problem{File: "secauto_schema_migrations", Message: err.Error()})
	}
	var jobs []store.StoredJob
	records := map[string][]byte{}
	err = pgx.BeginTxFunc(s.ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(s.ctx, "SELECT id, doc, key_id, status FROM secauto_jobs ORDER BY id")
		if err != nil {
			return err
		}
		jobs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.StoredJob, error) {
			var sj store.StoredJob
			var status string
			err := r.Scan(&sj.ID, &sj.Doc, &sj.KeyID, &status)
			sj.Status = job.Status(status)
			return sj, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(s.ctx, "SELECT key, value FROM secauto_records")
		if err != nil {
			return err
		}
		for rows.Next() {
			var k string
			var v []byte
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return err
			}
			records[k] = v
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	if o.Progress != nil {
		o.Progress(0, int64(len(jobs)))
	}
	problems := store.CheckJobs(jobsTable, jobs, o.Keyring)
	add(problems...)
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.JobID] = true
	}
	for _, sj := range jobs {
		if bad[sj.ID] {
			continue
		}
		var m struct {
			Status job.Status `json:"status"`
		}
		json.Unmarshal(sj.Doc, &m)
		if m.Status != sj.Status {
			add(store.Problem{File: jobsTable, JobID: sj.ID, Message: fmt.Sprintf("the status column says %s but the job says %s", sj.Status, m.Status)})
		}
		if k := store.JobKeyID(sj.Doc); k != sj.KeyID {
			add(store.Problem{File: jobsTable, JobID: sj.ID, Message: fmt.Sprintf("the key_id column says %q but the job is sealed with %q", sj.KeyID, k)})
		}
	}
	if o.Progress != nil {
		o.Progress(int64(len(jobs)), int64(len(jobs)))
	}
	res.Jobs = len(jobs)
	res.Records = len(records)
	add(store.CheckRecords(recordsTable, records, o)...)
	if s.o.Dir != "" {
		n, ps := store.CheckBackups(s.o.Dir, o.Keyring)
		res.Backups = n
		add(ps...)
	}
	res.OK = len(res.Problems) == 0
	return res, nil
}

// RotateKeys re-seals under the keyring's first key every job and record
// that is plain or sealed with another key, in batches of one transaction
// each. It is resumable: what is already sealed with the first key is
// skipped. A job changed meanwhile was sealed by its writer and is left as
// it is. A job whose key is missing stops the rotation with a
// *store.SealedError; what was done before stays done.
func (s *Store) RotateKeys(o store.RotateOptions) (_ *store.RotateResult, err error) {
	defer scrubErr(s.o.URL, &err)
	kr := s.o.Keyring
	if kr == nil {
		return nil, store.ErrNoKeyring
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	batch := o.Batch
	if batch <= 0 {
		batch = 256
	}
	primary := kr.Primary()
	res := &store.RotateResult{KeyID: primary}
	var total int64
	if err := s.pool.QueryRow(s.ctx, "SELECT count(*) FROM secauto_jobs WHERE key_id <> $1", primary).Scan(&total); err != nil {
		return nil, err
	}
	if o.Progress != nil {
		o.Progress(0, total)
	}
	var seen int64
	last := ""
	for {
		rows, err := s.pool.Query(s.ctx, "SELECT id, version, doc FROM secauto_jobs WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3", primary, last, batch)
		if err != nil {
			return res, err
		}
		type found struct {
			id      string
			version int64
			doc     []byte
		}
		fs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
			var f found
			err := r.Scan(&f.id, &f.version, &f.doc)
			return f, err
		})
		if err != nil {
			return res, err
		}
		if len(fs) == 0 {
			break
		}
		var ids []string
		var versions []int64
		var docs [][]byte
		for _, f := range fs {
			j, err := s.codec.DecodeJob(f.id, f.doc)
			if err != nil {
				return res, err
			}
			doc, err := s.codec.EncodeJob(j)
			if err != nil {
				return res, err
			}
			ids, versions, docs = append(ids, f.id), append(versions, f.version), append(docs, doc)
		}
		tag, err := s.pool.Exec(s.ctx, `UPDATE secauto_jobs AS t SET doc = u.doc, key_id = $1, version = nextval('secauto_jobs_version')
			FROM unnest($2::text[], $3::bigint[], $4::bytea[]) AS u(id, version, doc)
			WHERE t.id = u.id AND t.version = u.version`, primary, ids, versions, docs)
		if err != nil {
			return res, fmt.Errorf("re-encrypting jobs %s…: %w", ids[0], err)
		}
		res.Jobs += int(tag.RowsAffected())
		seen += int64(len(fs))
		last = fs[len(fs)-1].id
		if o.Progress != nil {
			o.Progress(min(seen, total), total)
		}
	}
	rows, err := s.pool.Query(s.ctx, "SELECT key, value FROM secauto_records ORDER BY key")
	if err != nil {
		return res, err
	}
	type rec struct {
		key string
		val []byte
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rec, error) {
		var x rec
		err := r.Scan(&x.key, &x.val)
		return x, err
	})
	if err != nil {
		return res, err
	}
	for _, r := range recs {
		if store.RecordKeyID(r.val) == primary {
			continue
		}
		pt, err := s.codec.OpenRecord(r.key, r.val)
		if err != nil {
			return res, err
		}
		nv, err := s.codec.SealRecord(r.key, pt)
		if err != nil {
			return res, err
		}
		if bytes.Equal(nv, r.val) {
			continue
		}
		tag, err := s.pool.Exec(s.ctx, "UPDATE secauto_records SET value = $3 WHERE key = $1 AND value = $2", r.key, r.val, nv)
		if err != nil {
			return res, fmt.Errorf("re-encrypting records: %w", err)
		}
		res.Records += int(tag.RowsAffected())
	}
	s.o.Logger.Debug("keys rotated", "key_id", primary, "jobs", res.Jobs, "records", res.Records)
	return res, nil
}
