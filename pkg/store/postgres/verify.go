package postgres

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// Names the problems of Verify are reported under.
const (
	jobsTable    = "secauto_jobs"
	recordsTable = "secauto_records"
)

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
