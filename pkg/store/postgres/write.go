package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// Update applies fn to the job's newest state and stores the result; see
// UpdateWith.
func (s *Store) Update(id string, fn func(*job.Job) error) (*job.Job, error) {
	return s.UpdateWith(id, fn, nil)
}

// UpdateWith reads the job, applies fn, checks the change as the file
// driver does (a terminal job never changes, a status change must be a
// transition, the id stays), and writes it only if no other writer
// changed the job since the read, with also's records in the same
// transaction; otherwise it starts over from the read.
func (s *Store) UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []store.Record) (_ *job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	for {
		var (
			status  string
			version int64
			node    *string
			doc     []byte
		)
		err := s.pool.QueryRow(s.ctx, "SELECT status, version, node, doc FROM secauto_jobs WHERE id = $1", id).Scan(&status, &version, &node, &doc)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
		}
		if err != nil {
			return nil, err
		}
		from := job.Status(status)
		j, err := s.codec.DecodeJob(id, doc)
		if err != nil {
			return nil, err
		}
		if err := fn(j); err != nil {
			return nil, err
		}
		if err := store.CheckChange(id, from, j); err != nil {
			return nil, err
		}
		w, err := s.jobWrite(j, from, deref(node))
		if err != nil {
			return nil, err
		}
		w.version = version
		var recs []store.Record
		if also != nil {
			if recs, err = s.sealRecords(also(j)); err != nil {
				return nil, err
			}
		}
		ok, err := s.writeJob(s.ctx, w, recs)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		s.member.track(j, from)
		return j, nil
	}
}

// jobWrite is one job's new state with the notifications its change sends.
type jobWrite struct {
	j       *job.Job
	doc     []byte
	node    string // "" stores NULL
	version int64  // the version read; the write lands only on it
	notify  []string
}

// jobWrite encodes j, which was in status from on node, and says what its
// change tells the other nodes: a wake when it becomes pending, and its
// node that it was settled when it leaves running by another's hand.
func (s *Store) jobWrite(j *job.Job, from job.Status, node string) (*jobWrite, error) {
	doc, err := s.codec.EncodeJob(j)
	if err != nil {
		return nil, err
	}
	w := &jobWrite{j: j, doc: doc, node: node}
	self := s.member.id()
	switch {
	case j.Status == job.Pending:
		w.node = ""
	case from == job.Pending && j.Status == job.Running:
		w.node = self
	}
	if j.Status == job.Pending && from != job.Pending {
		w.notify = append(w.notify, "")
	}
	if from == job.Running && j.Status != job.Running {
		w.notify = append(w.notify, settledPayload(node, j.ID, self)...)
	}
	if j.Status.Terminal() && !from.Terminal() {
		w.notify = append(w.notify, endedPayload(j.ID))
	}
	return w, nil
}

// endedPayload tells every node that job id ended or is gone, for the
// clients each may have waiting on it.
func endedPayload(id string) string { return "ended:" + id }

// settledPayload is the notification that tells node its running job id
// ended, unless node is the one ending it (or none).
func settledPayload(node, id, self string) []string {
	if node == "" || node == self {
		return nil
	}
	return []string{"settled:" + url.QueryEscape(node) + ":" + id}
}

const updateJobSQL = `UPDATE secauto_jobs SET status = $3, completed_at = $4, attempt = $5, node = nullif($6, ''),
	key_id = $7, doc = $8, version = nextval('secauto_jobs_version') WHERE id = $1 AND version = $2`

// writeJob stores w if the job is still at w.version, with recs and w's
// notifications in the same transaction, and reports whether it did.
func (s *Store) writeJob(ctx context.Context, w *jobWrite, recs []store.Record) (bool, error) {
	args := []any{w.j.ID, w.version, string(w.j.Status), w.j.CompletedAt, w.j.Attempts, w.node, s.codec.KeyID(), w.doc}
	if len(recs) == 0 && len(w.notify) == 0 {
		tag, err := s.pool.Exec(ctx, updateJobSQL, args...)
		return err == nil && tag.RowsAffected() == 1, err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, updateJobSQL, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errNotWritten
		}
		if err := putRecords(ctx, tx, recs); err != nil {
			return err
		}
		return notify(ctx, tx, w.notify...)
	})
	if err == errNotWritten {
		return false, nil
	}
	return err == nil, err
}

// errNotWritten rolls back a write that found the job changed.
var errNotWritten = errors.New("the job changed meanwhile")

func notify(ctx context.Context, tx pgx.Tx, payloads ...string) error {
	for _, p := range slices.Compact(slices.Sorted(slices.Values(payloads))) {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", notifyChannel, p); err != nil {
			return err
		}
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Delete removes a job durably, whatever its status; callers cancel a live
// job first. A running job of another node is announced settled to it.
func (s *Store) Delete(id string) (err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	self := s.member.id()
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		var status string
		var node *string
		err := tx.QueryRow(s.ctx, "DELETE FROM secauto_jobs WHERE id = $1 RETURNING status, node", id).Scan(&status, &node)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		payloads := []string{endedPayload(id)}
		if status == string(job.Running) {
			payloads = append(payloads, settledPayload(deref(node), id, self)...)
		}
		return notify(s.ctx, tx, payloads...)
	})
	if err == nil {
		s.member.forget(id)
	}
	return err
}

// Rerun stores the job next makes from the original (an id or a unique
// prefix) and links the two, in one transaction: the new job's RerunOf
// names the original, whose Reruns gains the new id.
func (s *Store) Rerun(idOrPrefix string, next func(orig *job.Job) (*job.Job, error)) (_ *job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	id, _, err := s.find(s.ctx, s.pool, idOrPrefix, true)
	if err != nil {
		return nil, err
	}
	newID, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	var out *job.Job
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		var status string
		var node *string
		var doc []byte
		err := tx.QueryRow(s.ctx, "SELECT status, node, doc FROM secauto_jobs WHERE id = $1 FOR UPDATE", id).Scan(&status, &node, &doc)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		orig, err := s.codec.DecodeJob(id, doc)
		if err != nil {
			return err
		}
		nj, err := next(orig.Clone())
		if err != nil {
			return err
		}
		nj = store.CompleteNew(nj, newID.String(), s.o.Now)
		nj.RerunOf = orig.ID
		if nj.ID == orig.ID {
			return fmt.Errorf("job %s: a rerun needs an id of its own", id)
		}
		ndoc, err := s.codec.EncodeJob(nj)
		if err != nil {
			return err
		}
		linked := orig.Clone()
		linked.Reruns = append(slices.Clone(orig.Reruns), nj.ID)
		odoc, err := s.codec.EncodeJob(linked)
		if err != nil {
			return err
		}
		nnode := ""
		if nj.Status == job.Running {
			nnode = s.member.id()
		}
		tag, err := tx.Exec(s.ctx, `INSERT INTO secauto_jobs (id, status, created_at, completed_at, attempt, node, key_id, doc)
			VALUES ($1, $2, $3, $4, $5, nullif($6, ''), $7, $8) ON CONFLICT (id) DO NOTHING`,
			nj.ID, string(nj.Status), nj.CreatedAt, nj.CompletedAt, nj.Attempts, nnode, s.codec.KeyID(), ndoc)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s", store.ErrExists, nj.ID)
		}
		if _, err := tx.Exec(s.ctx, "UPDATE secauto_jobs SET key_id = $2, doc = $3, version = nextval('secauto_jobs_version') WHERE id = $1",
			id, s.codec.KeyID(), odoc); err != nil {
			return err
		}
		if nj.Status == job.Pending {
			if err := notify(s.ctx, tx, ""); err != nil {
				return err
			}
		}
		out = nj
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
