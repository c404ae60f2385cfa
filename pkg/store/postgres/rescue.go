package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// RescueDead applies SPEC §5 step 3 to the running jobs of every other
// node whose lease has lapsed, and to running jobs whose node has no row at
// all, with also's records in the same transaction, and returns the jobs
// it changed. A dead node's row is deleted in the transaction that
// rescues its jobs, so exactly one survivor rescues it.
func (s *Store) RescueDead(now time.Time, also func(*job.Job) []store.Record) (_ []*job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	_, jobs, err := s.rescue(now, also)
	return jobs, err
}

// rescue is RescueDead, also for Recover: it returns the actions taken
// with the jobs they changed.
func (s *Store) rescue(now time.Time, also func(*job.Job) []store.Record) ([]store.RecoverAction, []*job.Job, error) {
	if now.IsZero() {
		now = s.o.Now()
	}
	now = now.UTC()
	self := s.member.id()
	var actions []store.RecoverAction
	var changed []*job.Job
	rows, err := s.pool.Query(s.ctx, "SELECT id FROM secauto_nodes WHERE lease_until < now() AND id <> $1 ORDER BY id", self)
	if err != nil {
		return nil, nil, err
	}
	dead, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, err
	}
	for _, node := range dead {
		var as []store.RecoverAction
		var js []*job.Job
		err := pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
			as, js = nil, nil
			var gone string
			err := tx.QueryRow(s.ctx, "DELETE FROM secauto_nodes WHERE id = $1 AND lease_until < now() RETURNING id", node).Scan(&gone)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // another node rescued it, or it renewed
			}
			if err != nil {
				return err
			}
			s.o.Logger.Warn("node is dead: its lease lapsed; recovering its running jobs", "node", node)
			as, js, err = s.rescueJobs(tx, "j.node = $1 AND j.status = 'running'", []any{node}, now, also)
			return err
		})
		if err != nil {
			return actions, changed, err
		}
		actions, changed = append(actions, as...), append(changed, js...)
	}
	var as []store.RecoverAction
	var js []*job.Job
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		as, js, err = s.rescueJobs(tx, orphaned, nil, now, also)
		return err
	})
	if err != nil {
		return actions, changed, err
	}
	return append(actions, as...), append(changed, js...), nil
}

// orphaned selects the running jobs whose node has no row: it never
// joined, or closed, or its row was deleted.
const orphaned = "j.status = 'running' AND (j.node IS NULL OR NOT EXISTS (SELECT 1 FROM secauto_nodes n WHERE n.id = j.node))"

// rescueJobs applies step 3 to the jobs j that where selects (locking
// them, skipping those another rescuer holds), in tx.
func (s *Store) rescueJobs(tx pgx.Tx, where string, args []any, now time.Time, also func(*job.Job) []store.Record) ([]store.RecoverAction, []*job.Job, error) {
	rows, err := tx.Query(s.ctx, "SELECT j.id, j.version, j.node, j.doc FROM secauto_jobs j WHERE "+where+
		" ORDER BY j.created_at, j.id FOR UPDATE OF j SKIP LOCKED", args...)
	if err != nil {
		return nil, nil, err
	}
	type found struct {
		id      string
		version int64
		node    *string
		doc     []byte
	}
	fs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
		var f found
		err := r.Scan(&f.id, &f.version, &f.node, &f.doc)
		return f, err
	})
	if err != nil {
		return nil, nil, err
	}
	self := s.member.id()
	var actions []store.RecoverAction
	var changed []*job.Job
	var payloads []string
	for _, f := range fs {
		j, err := s.codec.DecodeJob(f.id, f.doc)
		if err != nil {
			s.o.Logger.Error("running job of a dead node not recovered: it cannot be read", "job_id", f.id, "err", err.Error())
			continue
		}
		a := store.PlanRecovery(j, now)
		if err := a.Apply(j, now); err != nil {
			return nil, nil, fmt.Errorf("recover job %s: %w", f.id, err)
		}
		if err := store.CheckChange(f.id, job.Running, j); err != nil {
			return nil, nil, fmt.Errorf("recover job %s: %w", f.id, err)
		}
		w, err := s.jobWrite(j, job.Running, deref(f.node))
		if err != nil {
			return nil, nil, fmt.Errorf("recover job %s: %w", f.id, err)
		}
		tag, err := tx.Exec(s.ctx, updateJobSQL, j.ID, f.version, string(j.Status), j.CompletedAt, j.Attempts, w.node, s.codec.KeyID(), w.doc)
		if err != nil {
			return nil, nil, err
		}
		if tag.RowsAffected() != 1 {
			continue
		}
		if also != nil {
			recs, err := s.sealRecords(also(j))
			if err != nil {
				return nil, nil, err
			}
			if err := putRecords(s.ctx, tx, recs); err != nil {
				return nil, nil, err
			}
		}
		if deref(f.node) == self && self != "" {
			// This node's own job, orphaned: announce it to this node too.
			w.notify = append(w.notify, "settled:"+url.QueryEscape(self)+":"+j.ID)
		}
		payloads = append(payloads, w.notify...)
		actions = append(actions, a)
		changed = append(changed, j)
		s.o.Logger.Debug("job recovered", "job_id", j.ID, "status", string(j.Status), "attempts", j.Attempts)
	}
	return actions, changed, notify(s.ctx, tx, payloads...)
}
