package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// DefaultLease is how long a node that stops renewing stays alive to the
// others (store.node_lease).
const DefaultLease = 15 * time.Second

// Join registers this node and renews its lease every third of lease until
// Close. A row left by an earlier process with the same id is taken over:
// that process is gone, so the jobs it was running become orphans, which
// the next RescueDead settles (with their events).
func (s *Store) Join(n store.Node, lease time.Duration) (err error) {
	defer scrubErr(s.o.URL, &err)
	if n.ID == "" {
		return errors.New("a node needs an id to join")
	}
	if lease <= 0 {
		lease = DefaultLease
	}
	if n.StartedAt.IsZero() {
		n.StartedAt = s.o.Now()
	}
	done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	s.mu.Lock()
	if s.node != nil {
		s.mu.Unlock()
		return fmt.Errorf("this store already joined as node %s", s.node.ID)
	}
	s.mu.Unlock()
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(s.ctx, "UPDATE secauto_jobs SET node = NULL, version = nextval('secauto_jobs_version') WHERE node = $1 AND status = 'running'", n.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			s.o.Logger.Warn("an earlier process of this node left running jobs; they are recovered as orphans", "node", n.ID, "jobs", tag.RowsAffected())
		}
		_, err = tx.Exec(s.ctx, `INSERT INTO secauto_nodes (id, host, pid, address, started_at, lease_until)
			VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')
			ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, address = EXCLUDED.address,
				started_at = EXCLUDED.started_at, lease_until = EXCLUDED.lease_until`,
			n.ID, n.Host, n.PID, n.Address, n.StartedAt, lease.Microseconds())
		return err
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.node = &n
	s.lease = lease
	s.mu.Unlock()
	s.wg.Add(1)
	go s.renew(n, lease)
	s.startListener()
	select {
	case <-s.ready:
	case <-time.After(5 * time.Second):
		s.o.Logger.Warn("not yet listening for other nodes' wake-ups; retrying in the background")
	}
	return nil
}

const renewSQL = `INSERT INTO secauto_nodes (id, host, pid, address, started_at, lease_until)
	VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')
	ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until
	RETURNING (xmax = 0)`

// renew keeps the node's lease, in database time. A row that was deleted
// (the node was declared dead: its jobs were recovered) is inserted again.
func (s *Store) renew(n store.Node, lease time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(max(lease/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		var inserted bool
		err := s.pool.QueryRow(s.ctx, renewSQL, n.ID, n.Host, n.PID, n.Address, n.StartedAt, lease.Microseconds()).Scan(&inserted)
		switch {
		case s.ctx.Err() != nil:
			return
		case err != nil:
			scrubErr(s.o.URL, &err)
			s.o.Logger.Warn("the node's lease could not be renewed", "node", n.ID, "err", err.Error())
		case inserted:
			s.o.Logger.Warn("this node had been declared dead by another, which recovered its running jobs; it joined again", "node", n.ID)
		}
	}
}

// Claim starts up to max pending jobs, oldest first, that no other node is
// claiming (FOR UPDATE SKIP LOCKED): each goes through start, its node set
// to this one, all in one transaction that also renews the node's lease.
// A pending job that cannot be read or started is logged and left alone.
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
	s.mu.Lock()
	n, lease := s.node, s.lease
	s.mu.Unlock()
	if n == nil {
		return nil, errors.New("claim before join: a node must join the cluster before it starts jobs")
	}
	var started []*job.Job
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(s.ctx, renewSQL, n.ID, n.Host, n.PID, n.Address, n.StartedAt, lease.Microseconds()); err != nil {
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
		_, err := tx.Exec(s.ctx, `UPDATE secauto_jobs AS t SET status = u.status, node = $1, attempt = u.attempt,
				key_id = u.key_id, doc = u.doc, completed_at = NULL, version = nextval('secauto_jobs_version')
			FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::bytea[]) AS u(id, status, attempt, key_id, doc)
			WHERE t.id = u.id`, n.ID, ids, statuses, attempts, keyIDs, docs)
		if err != nil {
			return err
		}
		// Tracked before the commit, so that a notification about one of
		// them is never taken for another node's job.
		s.mu.Lock()
		for _, j := range started {
			s.running[j.ID] = j.Attempts
		}
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		s.mu.Lock()
		for _, j := range started {
			delete(s.running, j.ID)
		}
		s.mu.Unlock()
		return nil, err
	}
	return started, nil
}

// Wake receives (coalesced) whenever a job may have become pending on any
// node, and after the notification connection was lost and restored.
func (s *Store) Wake() <-chan struct{} {
	s.startListener()
	return s.wake
}

// Settled receives the id of a job this node runs that another node (or
// process) ended: cancelled, deleted, restored over or recovered.
func (s *Store) Settled() <-chan string {
	s.startListener()
	return s.settled
}

func (s *Store) startListener() {
	if s.closed.Load() || s.o.ReadOnly {
		return
	}
	s.listenOn.Do(func() {
		s.wg.Add(1)
		go s.listen()
	})
}

func (s *Store) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// listen holds a connection that LISTENs on the channel and hands what it
// hears to Wake and Settled. It reconnects with backoff when the
// connection drops, and then wakes the node and checks its running jobs,
// since notifications sent meanwhile were lost.
func (s *Store) listen() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	first := true
	for s.ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(s.ctx, s.connCfg.Copy())
		if err == nil {
			if _, err = conn.Exec(s.ctx, "LISTEN "+notifyChannel); err != nil {
				conn.Close(context.Background())
			}
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			scrubErr(s.o.URL, &err)
			s.o.Logger.Warn("cannot listen for other nodes' notifications; retrying", "err", err.Error(), "in", backoff)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if first {
			close(s.ready)
			first = false
		} else {
			s.reconcile()
		}
		s.poke()
		for {
			n, err := conn.WaitForNotification(s.ctx)
			if err != nil {
				if s.ctx.Err() == nil {
					scrubErr(s.o.URL, &err)
					s.o.Logger.Warn("lost the connection that listens for other nodes' notifications; reconnecting", "err", err.Error())
				}
				break
			}
			s.dispatch(n.Payload)
		}
		conn.Close(context.Background())
	}
}

func (s *Store) dispatch(payload string) {
	rest, ok := strings.CutPrefix(payload, "settled:")
	if !ok {
		s.poke()
		return
	}
	enode, id, ok := strings.Cut(rest, ":")
	node, err := url.QueryUnescape(enode)
	if !ok || err != nil || node != s.nodeID() {
		return
	}
	s.mu.Lock()
	delete(s.running, id)
	s.mu.Unlock()
	s.deliver(id)
}

func (s *Store) deliver(id string) {
	select {
	case s.settled <- id:
	default:
		s.o.Logger.Warn("a settled job was not announced: too many at once; its run stops at its next change", "job_id", id)
	}
}

// reconcile announces the jobs this node runs that another ended while
// its notifications were not heard.
func (s *Store) reconcile() {
	s.mu.Lock()
	node := ""
	if s.node != nil {
		node = s.node.ID
	}
	ids := make([]string, 0, len(s.running))
	want := make(map[string]int, len(s.running))
	for id, a := range s.running {
		ids = append(ids, id)
		want[id] = a
	}
	s.mu.Unlock()
	if node == "" || len(ids) == 0 {
		return
	}
	rows, err := s.pool.Query(s.ctx, "SELECT id, attempt FROM secauto_jobs WHERE id = ANY($1) AND status = 'running' AND node = $2", ids, node)
	if err != nil {
		return
	}
	still := map[string]int{}
	for rows.Next() {
		var id string
		var a int
		if rows.Scan(&id, &a) == nil {
			still[id] = a
		}
	}
	if rows.Err() != nil {
		return
	}
	slices.Sort(ids)
	for _, id := range ids {
		if a, ok := still[id]; ok && a == want[id] {
			continue
		}
		s.mu.Lock()
		cur, ok := s.running[id]
		if ok && cur == want[id] {
			delete(s.running, id)
		}
		s.mu.Unlock()
		if ok && cur == want[id] {
			s.deliver(id)
		}
	}
}

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
	self := s.nodeID()
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
	self := s.nodeID()
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

// Exclusive runs fn while this process holds the cluster-wide advisory
// lock name (on a connection of its own), and reports false without
// running fn when another holds it.
func (s *Store) Exclusive(name string, fn func() error) (_ bool, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return false, err
	}
	conn, err := s.pool.Acquire(s.ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	key := "secauto:" + s.schema + ":" + name
	var ok bool
	if err := conn.QueryRow(s.ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&ok); err != nil {
		return false, err
	}
	if !ok {
		return false, nil
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(ctx, "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key); uerr != nil {
			// Ending the session releases the lock.
			conn.Conn().Close(ctx)
		}
	}()
	return true, fn()
}
