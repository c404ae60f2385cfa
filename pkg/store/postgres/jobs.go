package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

const (
	// committers is how many group commits may be under way at once.
	committers = 2
	// maxBatch and maxBatchBytes bound one group commit.
	maxBatch      = 512
	maxBatchBytes = 16 << 20
)

// pgxQuerier is what a pool, a connection and a transaction share.
type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type createReq struct {
	j    *job.Job
	doc  []byte
	done chan error
}

// Create stores a new job once it is durable. An empty ID gets a UUIDv7, a
// zero CreatedAt the current time, an empty Status pending. Concurrent
// creates share one transaction.
func (s *Store) Create(j *job.Job) (_ *job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	id := j.ID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		id = u.String()
	}
	nj := store.CompleteNew(j, id, s.o.Now)
	doc, err := s.codec.EncodeJob(nj)
	if err != nil {
		return nil, err
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	r := &createReq{j: nj, doc: doc, done: make(chan error, 1)}
	s.creates <- r
	if err := <-r.done; err != nil {
		return nil, err
	}
	return nj, nil
}

// committer gathers the creates queued while the previous transaction
// committed into the next one.
func (s *Store) committer() {
	defer s.wg.Done()
	for {
		var first *createReq
		select {
		case first = <-s.creates:
		case <-s.ctx.Done():
			return
		}
		batch, size := []*createReq{first}, len(first.doc)
	gather:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case r := <-s.creates:
				batch = append(batch, r)
				size += len(r.doc)
			default:
				break gather
			}
		}
		s.commitCreates(batch)
	}
}

func (s *Store) commitCreates(batch []*createReq) {
	seen := make(map[string]bool, len(batch))
	var (
		todo                         []*createReq
		ids, statuses, keyIDs, nodes []string
		created                      []time.Time
		completed                    []*time.Time
		attempts                     []int32
		docs                         [][]byte
		pending                      bool
		nodeID                       = s.nodeID()
	)
	for _, r := range batch {
		if seen[r.j.ID] {
			r.done <- fmt.Errorf("%w: %s", store.ErrExists, r.j.ID)
			continue
		}
		seen[r.j.ID] = true
		todo = append(todo, r)
		ids = append(ids, r.j.ID)
		statuses = append(statuses, string(r.j.Status))
		created = append(created, r.j.CreatedAt)
		completed = append(completed, r.j.CompletedAt)
		attempts = append(attempts, int32(r.j.Attempts))
		node := ""
		if r.j.Status == job.Running {
			node = nodeID
		}
		nodes = append(nodes, node)
		keyIDs = append(keyIDs, s.codec.KeyID())
		docs = append(docs, r.doc)
		pending = pending || r.j.Status == job.Pending
	}
	if len(todo) == 0 {
		return
	}
	// A batch runs as one implicit transaction: the insert and the
	// notification commit together or not at all.
	b := &pgx.Batch{}
	inserted := map[string]bool{}
	b.Queue(`INSERT INTO secauto_jobs (id, status, created_at, completed_at, attempt, node, key_id, doc)
		SELECT u.id, u.status, u.created_at, u.completed_at, u.attempt, nullif(u.node, ''), u.key_id, u.doc
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::text[], $7::text[], $8::bytea[])
			AS u(id, status, created_at, completed_at, attempt, node, key_id, doc)
		ON CONFLICT (id) DO NOTHING RETURNING id`,
		ids, statuses, created, completed, attempts, nodes, keyIDs, docs).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			inserted[id] = true
		}
		return rows.Err()
	})
	if pending {
		b.Queue("SELECT pg_notify($1, '')", notifyChannel)
	}
	err := s.pool.SendBatch(s.ctx, b).Close()
	if err == nil {
		s.createTxns.Add(1)
		s.createJobs.Add(int64(len(inserted)))
	}
	for _, r := range todo {
		switch {
		case err != nil:
			r.done <- err
		case !inserted[r.j.ID]:
			r.done <- fmt.Errorf("%w: %s", store.ErrExists, r.j.ID)
		default:
			r.done <- nil
		}
	}
}

func (s *Store) readable() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Get returns the job with this id, or the only job whose id starts with
// it (store.ErrAmbiguous when several do, store.ErrNotFound when none).
func (s *Store) Get(idOrPrefix string) (_ *job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return nil, err
	}
	id, doc, err := s.find(s.ctx, s.pool, idOrPrefix, false)
	if err != nil {
		return nil, err
	}
	return s.codec.DecodeJob(id, doc)
}

// find resolves an id or unique prefix to the id and doc of one job; with
// idOnly it reads no doc.
func (s *Store) find(ctx context.Context, q pgxQuerier, idOrPrefix string, idOnly bool) (string, []byte, error) {
	if idOrPrefix == "" {
		return "", nil, fmt.Errorf("%w: empty id", store.ErrNotFound)
	}
	col := "doc"
	if idOnly {
		col = "''::bytea"
	}
	var doc []byte
	err := q.QueryRow(ctx, "SELECT "+col+" FROM secauto_jobs WHERE id = $1", idOrPrefix).Scan(&doc)
	if err == nil {
		return idOrPrefix, doc, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", nil, err
	}
	rows, err := q.Query(ctx, "SELECT id, "+col+" FROM secauto_jobs WHERE id LIKE $1 ESCAPE '\\' ORDER BY id LIMIT 6", likePrefix(idOrPrefix))
	if err != nil {
		return "", nil, err
	}
	var matches []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id, &doc); err != nil {
			return "", nil, err
		}
		matches = append(matches, id)
	}
	if err := rows.Err(); err != nil {
		return "", nil, err
	}
	switch len(matches) {
	case 0:
		return "", nil, fmt.Errorf("%w: %s", store.ErrNotFound, idOrPrefix)
	case 1:
		return matches[0], doc, nil
	}
	if len(matches) > 5 {
		matches = append(matches[:5], "…")
	}
	return "", nil, fmt.Errorf("%w: %q matches %s", store.ErrAmbiguous, idOrPrefix, strings.Join(matches, ", "))
}

func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// List returns the jobs matching f, newest first (by creation time, then
// id) unless f.Oldest. A job that cannot be read is left out and named
// (Options.OnUnreadable).
func (s *Store) List(f store.Filter) (_ []*job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if len(f.Statuses) > 0 {
		sts := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			sts[i] = string(st)
		}
		args = append(args, sts)
		where = append(where, "status = ANY($"+strconv.Itoa(len(args))+")")
	}
	if !f.Since.IsZero() {
		args = append(args, f.Since)
		where = append(where, "created_at >= $"+strconv.Itoa(len(args)))
	}
	q := "SELECT id, doc FROM secauto_jobs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Oldest {
		q += " ORDER BY created_at, id"
	} else {
		q += " ORDER BY created_at DESC, id DESC"
	}
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += " LIMIT $" + strconv.Itoa(len(args))
	}
	rows, err := s.pool.Query(s.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*job.Job{}
	for rows.Next() {
		var id string
		var doc []byte
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, err
		}
		j, err := s.codec.DecodeJob(id, doc)
		if err != nil {
			s.logUnreadable(id, err)
			continue
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

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
		s.track(j, from)
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
	self := s.nodeID()
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
	return w, nil
}

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

// track keeps the set of jobs this node runs (for Settled after a lost
// connection) up to date with a change this node made.
func (s *Store) track(j *job.Job, from job.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case j.Status == job.Running && from != job.Running && s.node != nil:
		s.running[j.ID] = j.Attempts
	case j.Status != job.Running:
		delete(s.running, j.ID)
	}
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
	self := s.nodeID()
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
		if status == string(job.Running) {
			return notify(s.ctx, tx, settledPayload(deref(node), id, self)...)
		}
		return nil
	})
	if err == nil {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
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
			nnode = s.nodeID()
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
