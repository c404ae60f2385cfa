package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// Claim starts up to max pending jobs, oldest first, that no other node is
// claiming (FOR UPDATE SKIP LOCKED): each goes through start, its node set
// to this one, all in one transaction. A node whose lease has lapsed claims
// nothing until its renewal has joined it again: the others may be
// recovering its jobs. The lease is only read here, never written: every
// worker of a node claims, and writing the node's row in each claim would
// make them queue on its lock. A pending job that cannot be read or started
// is logged and left alone.
func (s *Store) Claim(max int, start func(*job.Job) error) (_ []*job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	if max <= 0 {
		return nil, nil
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	n, _ := s.member.joined()
	if n == nil {
		return nil, errors.New("claim before join: a node must join the cluster before it starts jobs")
	}
	var started []*job.Job
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		var alive bool
		err := tx.QueryRow(s.ctx, `SELECT EXISTS (SELECT 1 FROM secauto_nodes WHERE id = $1 AND lease_until > now())`, n.ID).Scan(&alive)
		if err != nil || !alive {
			return err
		}
		skip := []string{}
		var ids, statuses, keyIDs []string
		var attempts []int32
		var docs [][]byte
		for len(started) < max {
			rows, err := tx.Query(s.ctx, `SELECT id, doc FROM secauto_jobs WHERE status = 'pending' AND NOT (id = ANY($2))
				ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`, max-len(started), skip)
			if err != nil {
				return err
			}
			type found struct {
				id  string
				doc []byte
			}
			fs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
				var f found
				err := r.Scan(&f.id, &f.doc)
				return f, err
			})
			if err != nil {
				return err
			}
			if len(fs) == 0 {
				break
			}
			for _, f := range fs {
				// Rows this transaction locked are not skipped by SKIP
				// LOCKED: the next round must not select them again.
				skip = append(skip, f.id)
				j, err := s.codec.DecodeJob(f.id, f.doc)
				if err == nil {
					if err = start(j); err == nil {
						err = store.CheckChange(f.id, job.Pending, j)
					}
				}
				var doc []byte
				if err == nil {
					doc, err = s.codec.EncodeJob(j)
				}
				if err != nil {
					s.o.Logger.Error("pending job not started: it cannot be read or started", "job_id", f.id, "err", err.Error())
					if s.o.OnUnreadable != nil {
						s.o.OnUnreadable(f.id, err)
					}
					continue
				}
				started = append(started, j)
				ids = append(ids, j.ID)
				statuses = append(statuses, string(j.Status))
				attempts = append(attempts, int32(j.Attempts))
				keyIDs = append(keyIDs, s.codec.KeyID())
				docs = append(docs, doc)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		_, err = tx.Exec(s.ctx, `UPDATE secauto_jobs AS t SET status = u.status, node = $1, attempt = u.attempt,
				key_id = u.key_id, doc = u.doc, completed_at = NULL, version = nextval('secauto_jobs_version')
			FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::bytea[]) AS u(id, status, attempt, key_id, doc)
			WHERE t.id = u.id`, n.ID, ids, statuses, attempts, keyIDs, docs)
		if err != nil {
			return err
		}
		s.member.runs(started)
		return nil
	})
	if err != nil {
		s.member.stopped(started)
		return nil, err
	}
	return started, nil
}
