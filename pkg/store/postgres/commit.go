package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// groupCommit stores new jobs: committer goroutines gather the creates
// queued while the previous transaction committed into the next one, so
// throughput does not stop at one commit per job (the file driver shares
// one fsync the same way).
type groupCommit struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	keyID string
	// nodeID names the node a job created running belongs to.
	nodeID func() string
	queue  chan *createReq

	// txns and jobs count the transactions and the jobs they stored.
	txns, jobs atomic.Int64
}

type createReq struct {
	j    *job.Job
	doc  []byte
	done chan error
}

func newGroupCommit(ctx context.Context, pool *pgxpool.Pool, keyID string, nodeID func() string) *groupCommit {
	return &groupCommit{ctx: ctx, pool: pool, keyID: keyID, nodeID: nodeID, queue: make(chan *createReq, 1024)}
}

// Create stores a new job once it is durable. An empty ID gets a UUIDv7, a
// zero CreatedAt the current time, an empty Status pending. Concurrent
// creates share one transaction.
func (s *Store) Create(j *job.Job) (_ *job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	id, err := store.JobID(j.ID)
	if err != nil {
		return nil, err
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
	if err := s.creates.add(nj, doc); err != nil {
		return nil, err
	}
	return nj, nil
}

// add queues j (encoded as doc) and waits until its transaction committed.
// The caller holds the store open, so the committers run until it returns.
func (g *groupCommit) add(j *job.Job, doc []byte) error {
	r := &createReq{j: j, doc: doc, done: make(chan error, 1)}
	g.queue <- r
	return <-r.done
}

// run is one committer: it commits batches until the store closes.
func (g *groupCommit) run() {
	for {
		var first *createReq
		select {
		case first = <-g.queue:
		case <-g.ctx.Done():
			return
		}
		batch, size := []*createReq{first}, len(first.doc)
	gather:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case r := <-g.queue:
				batch = append(batch, r)
				size += len(r.doc)
			default:
				break gather
			}
		}
		g.commit(batch)
	}
}

func (g *groupCommit) commit(batch []*createReq) {
	seen := make(map[string]bool, len(batch))
	var (
		todo                         []*createReq
		ids, statuses, keyIDs, nodes []string
		created                      []time.Time
		completed                    []*time.Time
		attempts                     []int32
		docs                         [][]byte
		pending                      bool
		nodeID                       = g.nodeID()
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
		keyIDs = append(keyIDs, g.keyID)
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
	err := g.pool.SendBatch(g.ctx, b).Close()
	if err == nil {
		g.txns.Add(1)
		g.jobs.Add(int64(len(inserted)))
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
