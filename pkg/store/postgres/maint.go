package postgres

import (
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
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
			ORDER BY j.created_at, j.id`, s.member.id())
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
